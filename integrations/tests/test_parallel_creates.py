"""Parallel syncs of one person that create the same records first, round after round."""

import pytest

from integrations import connection, services
from integrations.models import SyncLog
from integrations.sync import engine, writes
from leads.models import Lead
from teams.tests.factories import make_lead

from .conftest import unique_digits, unique_email

pytestmark = pytest.mark.django_db


def test_account_then_lead_taken_by_others(connected_team, sandbox, monkeypatch):
    """Another sync creates the account, and then the lead, just before each write."""
    email = unique_email("race")
    company = f"Race Company {unique_digits(8)}"
    lead = make_lead(connected_team.team, connected_team.member, last_name="Race",
                     email=email, company=company, notes="Met at the booth")
    other = connection.client_for(connected_team.integration)
    real_apply = writes.apply
    rounds = []

    def apply_after_other_sync(plan, client):
        rounds.append(plan.action)
        if len(rounds) == 1:
            other.create("accounts", {"accountid": plan.account.account_id, "name": company})
        elif len(rounds) == 2:
            other.create("leads", {"leadid": plan.record_id, "lastname": "Race",
                                   "emailaddress1": email})
        return real_apply(plan, client)

    monkeypatch.setattr(writes, "apply", apply_after_other_sync)
    log = services.sync_lead_now(lead.pk)

    lead.refresh_from_db()
    leads = [row for row in sandbox.store.records("lead") if row.get("emailaddress1") == email]
    accounts = [row for row in sandbox.store.records("account") if row["name"] == company]
    notes = [row for row in sandbox.store.records("annotation")
             if row.get("_objectid_value") == lead.dynamics_record_id]
    assert rounds == ["create", "create", "update"]
    assert log.outcome == SyncLog.Outcome.UPDATED
    assert lead.sync_status == Lead.SyncStatus.SYNCED
    assert len(leads) == 1
    assert len(accounts) == 1
    assert leads[0]["_parentaccountid_value"] == accounts[0]["accountid"]
    assert len(notes) == 1
    assert sum("already exists" in step for step in log.path) == 2


def test_endless_races_retry_later(connected_team, monkeypatch):
    lead = make_lead(connected_team.team, connected_team.member, last_name="Endless",
                     email=unique_email("endless"))

    def always_taken(plan, client):
        raise engine.RecordExists("lead", plan.record_id)

    monkeypatch.setattr(writes, "apply", always_taken)
    log = services.sync_lead_now(lead.pk)

    lead.refresh_from_db()
    assert log.outcome == SyncLog.Outcome.RETRYING
    assert lead.sync_status == Lead.SyncStatus.QUEUED
    assert "runs again later" in lead.last_sync_error
