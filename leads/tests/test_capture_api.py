"""Retried, invalid and throttled captures through POST /api/leads/, and the schema."""

import pytest

from leads import services
from leads.models import Lead
from leads.services import capture_lead_once

pytestmark = pytest.mark.django_db


@pytest.fixture
def scheduled(monkeypatch):
    calls = []
    monkeypatch.setattr("leads.services.schedule_sync_for_new_lead", calls.append)
    return calls


def capture_once(two_teams, data, reference="ref-1"):
    return capture_lead_once(
        member=two_teams.member_a, team=two_teams.team_a, data=data,
        source=Lead.Source.CSV, client_reference=reference,
    )


def test_capture_once_creates_lead(two_teams, scheduled):
    lead, created = capture_once(two_teams, {"email": "ada@example.com"})

    assert created is True
    assert lead.client_reference == "ref-1"
    assert lead.source == Lead.Source.CSV
    assert scheduled == [lead]


def test_capture_once_returns_first_lead(two_teams, scheduled):
    first, _ = capture_once(two_teams, {"email": "ada@example.com"})

    again, created = capture_once(two_teams, {"email": "other@example.com"})

    assert created is False
    assert again == first
    assert again.email == "ada@example.com"
    assert scheduled == [first]


def test_capture_once_requires_reference(two_teams, scheduled):
    with pytest.raises(ValueError):
        capture_once(two_teams, {"email": "ada@example.com"}, reference="")


def test_capture_once_race_returns_winner(two_teams, scheduled, monkeypatch):
    # The lookup misses, as it does for the second of two concurrent requests, so the
    # insert hits the unique constraint and the winner is read back.
    winner, _ = capture_once(two_teams, {"email": "ada@example.com"})
    lookups = iter([None])
    real_lookup = services._lead_by_reference
    monkeypatch.setattr(
        services, "_lead_by_reference",
        lambda member, reference: next(lookups, None) or real_lookup(member, reference),
    )

    lead, created = capture_once(two_teams, {"email": "late@example.com"})

    assert created is False
    assert lead == winner
    assert Lead.objects.filter(client_reference="ref-1").count() == 1
