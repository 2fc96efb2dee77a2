"""The import_leads management command."""

from io import StringIO
from pathlib import Path

import django
import pytest
from django.core.management import ManagementUtility, call_command
from django.core.management.base import CommandError

from leads.imports import MAX_FILE_SIZE
from leads.models import Lead
from teams.tests.factories import make_member

pytestmark = pytest.mark.django_db

FILES = Path(__file__).parent / "files"


def run(*args):
    output = StringIO()
    call_command("import_leads", *args, stdout=output)
    return output.getvalue()


def test_command_imports_file(two_teams):
    output = run(str(FILES / "eventbrite.csv"), "--member", two_teams.member_a.email)

    assert ("eventbrite.csv (CSV): 5 rows, 2 to import, 0 already imported, "
            "3 with errors.") in output
    assert "Ignored columns: Order #, Order Date" in output
    assert "  line 3: email: 'luis@@example': Enter a valid email address." in output
    assert "  line 6: last_name: 120 characters, longer than the 100 allowed." in output
    assert "Created 2, already imported 0, failed 3." in output
    leads = Lead.objects.filter(source=Lead.Source.CSV)
    assert {lead.email for lead in leads} == {
        "priya.raman@lumen.example", "ann@tidewater.example",
    }
    assert {lead.team for lead in leads} == {two_teams.team_a}


def test_command_rerun_creates_nothing(two_teams):
    path = str(FILES / "several_cards.vcf")
    run(path, "--member", two_teams.member_a.email)
    count = Lead.objects.count()

    output = run(path, "--member", two_teams.member_a.email)

    assert Lead.objects.count() == count
    assert "0 to import, 3 already imported, 2 with errors." in output
    assert "Created 0, already imported 3, failed 2." in output


def test_command_dry_run_saves_nothing(two_teams):
    count = Lead.objects.count()

    output = run(str(FILES / "iphone_3_0.vcf"), "--member", two_teams.member_a.email,
                 "--dry-run")

    assert "iphone_3_0.vcf (vCard): 1 rows, 1 to import" in output
    assert "Dry run: nothing was saved." in output
    assert Lead.objects.count() == count


def test_command_team_option(two_teams):
    make_member(two_teams.team_b, two_teams.member_a)

    with pytest.raises(CommandError, match="several teams"):
        run(str(FILES / "card_4_0.vcf"), "--member", two_teams.member_a.email)
    run(str(FILES / "card_4_0.vcf"), "--member", two_teams.member_a.email,
        "--team", str(two_teams.team_b.pk))

    assert Lead.objects.get(email="sofia.marin@nimbo.example").team == two_teams.team_b


def test_command_unknown_member(two_teams):
    with pytest.raises(CommandError, match="No active user has the email"):
        run(str(FILES / "card_4_0.vcf"), "--member", "nobody@example.com")


def test_command_missing_file(two_teams, tmp_path):
    with pytest.raises(CommandError, match="Cannot read"):
        run(str(tmp_path / "missing.csv"), "--member", two_teams.member_a.email)


def test_command_unreadable_files(two_teams, tmp_path):
    cases = {
        "empty.csv": (b"", "The file is empty."),
        "junk.bin": (bytes(range(256)), "binary data"),
        "latin.csv": (b"Name\nA\x81B\n", "not UTF-8, UTF-16 or Windows-1252"),
    }
    for name, (content, message) in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(CommandError, match=message):
            run(str(path), "--member", two_teams.member_a.email)


def test_command_oversized_file(two_teams, tmp_path):
    path = tmp_path / "huge.csv"
    # A sparse file: its size is over the limit without writing the bytes.
    with path.open("wb") as file:
        file.truncate(MAX_FILE_SIZE + 1)

    with pytest.raises(CommandError, match="larger than the 20 MB limit"):
        run(str(path), "--member", two_teams.member_a.email)


def test_command_no_valid_row_exits_1(two_teams, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_bytes(b"Name,Email\nAda Byron,not-an-email\n")

    with pytest.raises(CommandError, match="No row can be imported."):
        run(str(path), "--member", two_teams.member_a.email)


def test_command_exit_status(two_teams, tmp_path, capsys, monkeypatch):
    # execute() calls django.setup(), which would bind the log handler to the stderr that
    # capsys replaces and closes after this test. Django is already set up here.
    monkeypatch.setattr(django, "setup", lambda *args, **kwargs: None)
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    utility = ManagementUtility(
        ["manage.py", "import_leads", str(path), "--member", two_teams.member_a.email]
    )

    with pytest.raises(SystemExit) as raised:
        utility.execute()

    assert raised.value.code == 1
    assert "The file is empty." in capsys.readouterr().err
