import pytest
from django.core.exceptions import ValidationError

from leads.models import Lead
from leads.services import (
    NoTeamError,
    NotTeamMemberError,
    TeamRequiredError,
    capture_lead,
    choose_capture_team,
)
from teams.tests.factories import make_member, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def scheduled(monkeypatch):
    """Leads passed to the sync hook, in call order."""
    calls = []
    monkeypatch.setattr("leads.services.schedule_sync_for_new_lead", calls.append)
    return calls


def test_capture_lead_saves_lead(two_teams, scheduled):
    lead = capture_lead(
        member=two_teams.member_a, team=two_teams.team_a, data={"email": "ada@example.com"}
    )

    assert lead.pk is not None
    assert lead.captured_by == two_teams.member_a
    assert lead.team == two_teams.team_a
    assert lead.sync_status == Lead.SyncStatus.PENDING


def test_capture_lead_schedules_sync(two_teams, scheduled):
    lead = capture_lead(member=two_teams.member_a, team=two_teams.team_a, data={"phone": "555"})

    assert scheduled == [lead]


def test_capture_lead_rolls_back_on_hook_error(two_teams, monkeypatch):
    def fail(lead):
        raise RuntimeError("queue down")

    monkeypatch.setattr("leads.services.schedule_sync_for_new_lead", fail)

    with pytest.raises(RuntimeError):
        capture_lead(member=two_teams.member_a, team=two_teams.team_a, data={"phone": "555"})

    assert not Lead.objects.filter(phone="555").exists()


def test_capture_lead_logs_ids(two_teams, scheduled, caplog):
    caplog.set_level("INFO", logger="leads.services")

    lead = capture_lead(
        member=two_teams.member_a, team=two_teams.team_a, data={"email": "ada@example.com"}
    )

    assert f"lead {lead.pk}" in caplog.text
    assert "ada@example.com" not in caplog.text


def test_capture_lead_non_member(two_teams, scheduled):
    with pytest.raises(NotTeamMemberError):
        capture_lead(member=two_teams.member_b, team=two_teams.team_a, data={"phone": "555"})

    assert scheduled == []


def test_capture_lead_sync_field_rejected(two_teams, scheduled):
    with pytest.raises(ValueError, match="sync_status"):
        capture_lead(
            member=two_teams.member_a,
            team=two_teams.team_a,
            data={"phone": "555", "sync_status": "synced"},
        )


def test_capture_lead_without_identity(two_teams, scheduled):
    with pytest.raises(ValidationError, match="at least one of"):
        capture_lead(member=two_teams.member_a, team=two_teams.team_a, data={"notes": "hi"})


def test_capture_lead_invalid_email(two_teams, scheduled):
    with pytest.raises(ValidationError):
        capture_lead(member=two_teams.member_a, team=two_teams.team_a, data={"email": "nope"})


def test_choose_team_single(two_teams):
    assert choose_capture_team(member=two_teams.member_a) == two_teams.team_a


def test_choose_team_named(two_teams):
    make_member(two_teams.team_b, two_teams.member_a)

    chosen = choose_capture_team(member=two_teams.member_a, team=two_teams.team_b)

    assert chosen == two_teams.team_b


def test_choose_team_several_unnamed(two_teams):
    make_member(two_teams.team_b, two_teams.member_a)

    with pytest.raises(TeamRequiredError, match="several teams"):
        choose_capture_team(member=two_teams.member_a)


def test_choose_team_named_non_member(two_teams):
    with pytest.raises(NotTeamMemberError):
        choose_capture_team(member=two_teams.member_a, team=two_teams.team_b)


def test_choose_team_none(two_teams):
    with pytest.raises(NoTeamError):
        choose_capture_team(member=make_user())
