"""vCard and CSV imports: reading real-world export shapes, importing, and the admin flow."""

from pathlib import Path

import pytest
from django.urls import reverse

from leads.imports import (
    MAX_FILE_SIZE,
    ImportFileError,
    import_file,
    preview_file,
    read_file,
)
from leads.imports.base import REFERENCE_PREFIX
from leads.models import Lead

FILES = Path(__file__).parent / "files"


def read(name):
    return read_file((FILES / name).read_bytes(), file_name=name)


def rows_by_location(preview):
    return {row.location: row for row in preview.rows}


# -- vCard ------------------------------------------------------------------------------

def test_vcard_iphone_3_0():
    preview = read("iphone_3_0.vcf")

    assert preview.source == Lead.Source.VCARD
    assert len(preview.rows) == 1
    row = preview.rows[0]
    assert row.errors == []
    assert row.data == {
        "first_name": "Chidinma",
        "last_name": "Okafor",
        "email": "c.okafor@brightwave.example",
        "phone": "+44 20 7946 0958",
        "mobile_phone": "+44 7700 900123",
        "company": "Brightwave Analytics",
        "job_title": "Head of Partnerships",
        "website": "https://brightwave.example",
        "notes": "Met at the London data summit. Wants a demo of the, reporting add-on "
                 "in Q3.",
        "street": "Unit 5, Canal Wharf",
        "city": "London",
        "region": "Greater London",
        "postal_code": "E14 5AB",
        "country": "United Kingdom",
    }


def test_vcard_android_2_1_quoted_printable():
    preview = read("android_2_1.vcf")

    first, second = preview.rows
    assert first.errors == []
    assert first.data == {
        "first_name": "Jörg",
        "last_name": "Müller-Schön",
        "email": "j.mueller@feldmark.example",
        "phone": "+49 30 9876543",
        "mobile_phone": "+49 151 23456789",
        "company": "Feldmark Gerätebau GmbH",
        "job_title": "Einkaufsleiter",
        "notes": "Stand 4B\nRuft im März zurück",
        "street": "Industriestraße 4",
        "city": "München",
        "region": "Bayern",
        "postal_code": "80331",
        "country": "Deutschland",
    }
    assert second.errors == []
    assert second.data == {
        "first_name": "Renée",
        "last_name": "Lefèvre",
        "phone": "+33 1 23 45 67 89",
        "company": "Boulangerie Héloïse",
    }


def test_vcard_4_0_uri_phones():
    row = read("card_4_0.vcf").rows[0]

    assert row.errors == []
    assert row.data == {
        "first_name": "Sofía",
        "last_name": "Marín",
        "email": "sofia.marin@nimbo.example",
        "phone": "+34-91-555-0142 ext. 7",
        "mobile_phone": "+34-600-555-017",
        "company": "Nimbo Labs",
        "job_title": "CTO",
        "website": "https://nimbo.example",
        "street": "Calle Mayor 10",
        "city": "Madrid",
        "postal_code": "28013",
        "country": "Spain",
    }


def test_vcard_several_cards():
    rows = rows_by_location(read("several_cards.vcf"))

    assert list(rows) == [
        "card 1 (line 1)", "card 2 (line 6)", "card 3 (line 14)", "card 4 (line 20)",
        "card 5 (line 25)",
    ]
    # FN is split when N is missing.
    assert rows["card 1 (line 1)"].data == {
        "first_name": "Tomasz", "last_name": "Wiśniewski", "email": "tomasz@kolej.example",
    }
    # A company's card has FN equal to ORG, which is not a person's name.
    assert rows["card 2 (line 6)"].data == {
        "phone": "+1 206 555 0188", "company": "Harbor Freight Logistics",
    }
    card_errors = [str(error) for error in rows["card 3 (line 14)"].errors]
    assert len(card_errors) == 1
    assert card_errors[0].startswith("No first name, last name, email, phone")
    assert card_errors[0].endswith(" found, so the row cannot become a lead.")
    assert [error.field for error in rows["card 4 (line 20)"].errors] == ["email"]
    assert rows["card 5 (line 25)"].errors == []
    assert rows["card 5 (line 25)"].data["job_title"] == "Buyer"


def test_vcard_truncated_card():
    first, second = read("truncated.vcf").rows

    assert first.errors == []
    assert first.data["email"] == "kwame@adinkra.example"
    assert second.location == "card 2 (line 6)"
    assert "no END:VCARD line" in str(second.errors[0])


def test_vcard_windows_1252():
    row = read("windows_1252.vcf").rows[0]

    assert row.errors == []
    assert row.data == {
        "first_name": "Zoë", "last_name": "Gonçalves", "email": "zoe@cafe-noel.example",
        "company": "Café Noël – Lisboa",
    }


def test_vcard_undecodable_line():
    content = b"BEGIN:VCARD\r\nVERSION:3.0\r\nFN:A\x81B\r\nEND:VCARD\r\n"

    row = read_file(content, file_name="bad.vcf").rows[0]

    assert str(row.errors[0]) == (
        "Line 3 is not UTF-8 or Windows-1252 text. Export the card again as UTF-8."
    )


def test_vcard_malformed_line_is_row_error():
    content = (
        b"BEGIN:VCARD\r\nVERSION:3.0\r\nthis line has no colon\r\nEND:VCARD\r\n"
        b"BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Rita Levi\r\nEND:VCARD\r\n"
    )

    first, second = read_file(content, file_name="mixed.vcf").rows

    assert "could not be read" in str(first.errors[0])
    assert second.data == {"first_name": "Rita", "last_name": "Levi"}


def test_vcard_without_cards():
    with pytest.raises(ImportFileError, match="no BEGIN:VCARD line"):
        read_file(b"FN:Nobody\r\n", file_name="cards.vcf")


# -- CSV --------------------------------------------------------------------------------

def test_csv_eventbrite():
    preview = read("eventbrite.csv")
    rows = rows_by_location(preview)

    assert preview.source == Lead.Source.CSV
    assert preview.ignored_columns == [
        "Order #", "Order Date", "Quantity", "Ticket Type", "Attendee #", "Attendee Status",
    ]
    assert rows["line 2"].errors == []
    assert rows["line 2"].data == {
        "first_name": "Priya",
        "last_name": "Raman",
        "email": "priya.raman@lumen.example",
        "job_title": "VP Engineering",
        "company": "Lumen Robotics",
        "phone": "+1 617 555 0134",
        "mobile_phone": "+1 617 555 0199",
        "street": "200 Summer St, Floor 4",
        "city": "Boston",
        "region": "MA",
        "postal_code": "02210",
        "country": "United States",
    }
    assert [(e.field, e.message) for e in rows["line 3"].errors] == [
        ("email", "'luis@@example': Enter a valid email address."),
    ]
    assert [e.field for e in rows["line 4"].errors] == [None]
    assert rows["line 5"].data["last_name"] == "O'Neil, Jr"
    assert rows["line 5"].data["job_title"] == "Director, Sales"
    assert [(e.field, e.message) for e in rows["line 6"].errors] == [
        ("last_name", "120 characters, longer than the 100 allowed."),
    ]


def test_csv_linkedin_notes_before_header():
    preview = read("linkedin.csv")

    assert preview.ignored_columns == ["Connected On"]
    assert [row.location for row in preview.rows] == ["line 5", "line 6"]
    assert preview.rows[0].data == {
        "first_name": "Fatima",
        "last_name": "Zahra",
        "website": "https://www.linkedin.com/in/fatima-zahra-example",
        "company": "Atlas Mining",
        "job_title": "Geologist",
    }
    assert preview.rows[1].data["email"] == "owen.price@harbour.example"


def test_csv_windows_1252_full_name():
    first, second = read("windows_1252.csv").rows

    assert first.data == {
        "first_name": "François",
        "last_name": "Dubois",
        "email": "francois.dubois@creme.example",
        "company": "Crème Brûlée SARL",
        "job_title": "Gérant",
        "city": "Besançon",
        "country": "France",
        "notes": "Intéressé – rappeler",
    }
    assert second.data["first_name"] == "Björn"
    assert second.data["last_name"] == "Ødegård"
    assert second.data["city"] == "Tromsø"


def test_csv_excel_semicolon_bom():
    preview = read("excel_semicolon.csv")

    assert preview.ignored_columns == ["Umsatz"]
    assert preview.rows[0].data == {
        "first_name": "Lena",
        "last_name": "Schäfer",
        "email": "lena.schaefer@wolke.example",
        "company": "Wolke Sieben GmbH",
        "job_title": "Geschäftsführerin",
        "phone": "+49 40 123456",
        "mobile_phone": "+49 171 555 0101",
        "street": "Große Elbstraße 7",
        "postal_code": "22767",
        "city": "Hamburg",
        "country": "Deutschland",
    }
    assert preview.rows[1].data["first_name"] == "Ömer"


def test_csv_utf16_tabs():
    row = read("utf16_tabs.csv").rows[0]

    assert row.data == {
        "first_name": "Akira", "last_name": "Tanaka", "email": "akira@kumo.example",
        "company": "雲株式会社",
    }


def test_csv_header_variants():
    cases = [
        "first_name,last_name,email_address",
        "FIRSTNAME,Surname,E-Mail",
        " Given Name , Family Name ,Work Email",
    ]
    for header in cases:
        content = f"{header}\nGrace,Hopper,grace@navy.example\n".encode()
        row = read_file(content, file_name="people.csv").rows[0]
        assert row.data == {
            "first_name": "Grace", "last_name": "Hopper", "email": "grace@navy.example",
        }, header


def test_csv_unsafe_website_rejected():
    content = b"Name,Website\nEve Mallory,javascript:alert(1)\n"

    row = read_file(content, file_name="people.csv").rows[0]

    assert [error.field for error in row.errors] == ["website"]


def test_csv_without_known_columns():
    with pytest.raises(ImportFileError, match="No known column"):
        read_file(b"alpha,beta\n1,2\n", file_name="numbers.csv")


# -- Broken files -----------------------------------------------------------------------

def test_empty_file_rejected():
    with pytest.raises(ImportFileError, match="The file is empty."):
        read_file(b"", file_name="empty.csv")


def test_whitespace_only_file_rejected():
    with pytest.raises(ImportFileError, match="contains no rows"):
        read_file(b"\r\n  \r\n", file_name="blank.csv")


def test_binary_junk_rejected():
    junk = bytes(range(256)) * 8

    with pytest.raises(ImportFileError, match="binary data"):
        read_file(junk, file_name="photo.jpg")


def test_undecodable_csv_rejected():
    with pytest.raises(ImportFileError, match="not UTF-8, UTF-16 or Windows-1252"):
        read_file(b"Name,Email\nA\x81B,a@b.example\n", file_name="people.csv")


def test_oversized_file_rejected():
    content = b"Name\n" + b"x" * MAX_FILE_SIZE

    with pytest.raises(ImportFileError) as raised:
        read_file(content, file_name="huge.csv")

    assert str(raised.value) == (
        "The file is 20.0 MB, larger than the 20 MB limit for imports. "
        "Split it into smaller files."
    )


# -- Importing --------------------------------------------------------------------------

@pytest.mark.django_db
def test_import_creates_leads_with_sync(two_teams):
    content = (FILES / "several_cards.vcf").read_bytes()

    preview, result = import_file(
        content, file_name="several_cards.vcf", member=two_teams.member_a,
        team=two_teams.team_a,
    )

    assert len(preview.new_rows) == 3
    assert result.created == 3
    assert result.already_imported == 0
    assert [location for location, _ in result.failed] == [
        "card 3 (line 14)", "card 4 (line 20)",
    ]
    leads = Lead.objects.filter(pk__in=result.created_lead_ids)
    for lead in leads:
        assert lead.source == Lead.Source.VCARD
        assert lead.team == two_teams.team_a
        assert lead.captured_by == two_teams.member_a
        assert lead.client_reference.startswith(REFERENCE_PREFIX)
        # The capture hook ran: without an integration it leaves the lead pending
        # with the reason.
        assert lead.sync_status == Lead.SyncStatus.PENDING
        assert lead.last_sync_error.startswith("No Dynamics integration")


@pytest.mark.django_db
def test_import_calls_sync_hook(two_teams, monkeypatch):
    scheduled = []
    monkeypatch.setattr("leads.services.schedule_sync_for_new_lead", scheduled.append)

    _, result = import_file(
        (FILES / "linkedin.csv").read_bytes(), file_name="linkedin.csv",
        member=two_teams.member_a, team=two_teams.team_a,
    )

    assert [lead.pk for lead in scheduled] == result.created_lead_ids
    assert {lead.source for lead in scheduled} == {Lead.Source.CSV}


@pytest.mark.django_db
def test_reimport_creates_nothing(two_teams):
    content = (FILES / "eventbrite.csv").read_bytes()
    import_file(content, file_name="eventbrite.csv", member=two_teams.member_a,
                team=two_teams.team_a)
    count = Lead.objects.count()

    preview, result = import_file(content, file_name="eventbrite.csv",
                                  member=two_teams.member_a, team=two_teams.team_a)

    assert Lead.objects.count() == count
    assert result.created == 0
    assert result.already_imported == 2
    assert len(preview.already_imported_rows) == 2
    assert preview.new_rows == []


@pytest.mark.django_db
def test_same_person_in_other_file_dedupes(two_teams):
    first = b"First Name,Last Name,Email\nGrace,Hopper,grace@navy.example\n"
    second = b"Email;Surname;Vorname;Notizen\n GRACE@navy.example ;Hopper;Grace;\n"
    import_file(first, file_name="a.csv", member=two_teams.member_a, team=two_teams.team_a)

    _, result = import_file(second, file_name="b.csv", member=two_teams.member_a,
                            team=two_teams.team_a)

    assert result.created == 0
    assert result.already_imported == 1


@pytest.mark.django_db
def test_same_file_other_member_creates(two_teams):
    content = b"Name,Email\nGrace Hopper,grace@navy.example\n"
    import_file(content, file_name="a.csv", member=two_teams.member_a, team=two_teams.team_a)

    _, result = import_file(content, file_name="a.csv", member=two_teams.member_b,
                            team=two_teams.team_b)

    assert result.created == 1


@pytest.mark.django_db
def test_preview_saves_nothing(two_teams):
    count = Lead.objects.count()

    preview = preview_file((FILES / "eventbrite.csv").read_bytes(), file_name="e.csv",
                           member=two_teams.member_a)

    assert len(preview.new_rows) == 2
    assert Lead.objects.count() == count


# -- Admin ------------------------------------------------------------------------------

@pytest.fixture
def imports_dir(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    return tmp_path / "imports"


def upload(client, team, member, name, content):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return client.post(reverse("admin:leads_lead_import"), {
        "team": team.pk, "captured_by": member.pk,
        "file": SimpleUploadedFile(name, content),
    })


@pytest.mark.django_db
def test_admin_import_flow(client, two_teams, imports_dir):
    client.force_login(two_teams.admin_a)

    form_page = client.get(reverse("admin:leads_lead_import"))
    assert form_page.status_code == 200
    assert form_page.context["form"].initial == {
        "team": two_teams.team_a.pk, "captured_by": two_teams.admin_a.pk,
    }

    response = upload(client, two_teams.team_a, two_teams.member_a, "eventbrite.csv",
                      (FILES / "eventbrite.csv").read_bytes())
    assert response.status_code == 302
    preview_page = client.get(response.url)
    assert preview_page.status_code == 200
    assert Lead.objects.filter(source=Lead.Source.CSV).count() == 0
    content = preview_page.content.decode()
    assert "Ignored columns (no matching lead field): Order #, Order Date" in content
    assert "Enter a valid email address." in content
    assert "line 6" in content

    run_url = preview_page.context["run_url"]
    summary = client.post(run_url, follow=True)

    assert summary.status_code == 200
    result = summary.context["result"]
    assert result.created == 2
    assert result.already_imported == 0
    assert [location for location, _ in result.failed] == ["line 3", "line 4", "line 6"]
    leads = Lead.objects.filter(source=Lead.Source.CSV)
    assert {lead.email for lead in leads} == {
        "priya.raman@lumen.example", "ann@tidewater.example",
    }
    assert {lead.captured_by for lead in leads} == {two_teams.member_a}


@pytest.mark.django_db
def test_admin_import_batches(client, two_teams, imports_dir, monkeypatch):
    monkeypatch.setattr("leads.imports.admin_views.IMPORT_BATCH_SIZE", 2)
    lines = "".join(f"Person {n},person{n}@example.org\n" for n in range(5))
    client.force_login(two_teams.admin_a)
    response = upload(client, two_teams.team_a, two_teams.admin_a, "people.csv",
                      f"Name,Email\n{lines}".encode())
    run_url = client.get(response.url).context["run_url"]

    progress = client.post(run_url)
    assert progress.status_code == 200
    assert b'<progress id="import-progress" max="5" value="2">' in progress.content
    client.post(run_url)
    done = client.post(run_url)

    assert done.status_code == 302
    summary = client.get(done.url)
    assert summary.context["result"].created == 5
    # A request sent again after the last batch changes nothing.
    assert client.post(run_url).status_code == 302
    assert Lead.objects.filter(source=Lead.Source.CSV).count() == 5


@pytest.mark.django_db
def test_admin_import_shows_already_imported(client, two_teams, imports_dir):
    content = (FILES / "card_4_0.vcf").read_bytes()
    import_file(content, file_name="card.vcf", member=two_teams.member_a,
                team=two_teams.team_a)
    client.force_login(two_teams.admin_a)

    response = upload(client, two_teams.team_a, two_teams.member_a, "card.vcf", content)
    page = client.get(response.url)

    assert b"Already imported before (skipped)" in page.content
    assert b"Nothing to import." in page.content


@pytest.mark.django_db
def test_admin_import_file_errors(client, two_teams, imports_dir):
    client.force_login(two_teams.admin_a)
    cases = {
        "empty.csv": (b"", "The submitted file is empty."),
        "junk.bin": (bytes(range(256)), "binary data"),
        "huge.csv": (b"x" * (MAX_FILE_SIZE + 1), "larger than the 20 MB limit"),
    }
    for name, (content, message) in cases.items():
        response = upload(client, two_teams.team_a, two_teams.member_a, name, content)
        assert response.status_code == 200, name
        assert message in str(response.context["form"].errors["file"]), name


@pytest.mark.django_db
def test_admin_import_other_team_member_rejected(client, two_teams, imports_dir):
    client.force_login(two_teams.admin_a)

    response = upload(client, two_teams.team_a, two_teams.member_b, "a.csv",
                      b"Name\nGrace Hopper\n")

    assert response.status_code == 200
    assert "captured_by" in response.context["form"].errors
    assert not Lead.objects.filter(first_name="Grace").exists()


@pytest.mark.django_db
def test_admin_import_member_redirected(client, two_teams):
    client.force_login(two_teams.member_a)

    response = client.get(reverse("admin:leads_lead_import"))

    assert response.status_code == 302


@pytest.mark.django_db
def test_admin_import_preview_of_other_admin_404(client, two_teams, imports_dir):
    from teams.tests.factories import make_admin

    client.force_login(two_teams.admin_a)
    response = upload(client, two_teams.team_a, two_teams.member_a, "a.csv",
                      b"Name\nGrace Hopper\n")
    other_admin = make_admin(two_teams.team_a)
    client.force_login(other_admin)

    assert client.get(response.url).status_code == 404
    assert client.post(response.url + "run/").status_code == 404


@pytest.mark.django_db
def test_admin_changelist_links_import(client, two_teams):
    client.force_login(two_teams.admin_a)

    response = client.get(reverse("admin:leads_lead_changelist"))

    assert reverse("admin:leads_lead_import").encode() in response.content
