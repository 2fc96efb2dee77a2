"""Bulk sync of many leads against the sandbox."""

import pytest

from integrations import services
from integrations.models import SyncLog
from leads.models import Lead
from teams.tests.factories import make_lead

from .conftest import unique_digits, unique_email

pytestmark = pytest.mark.django_db


def records_with_email(sandbox, entity, email):
    return [row for row in sandbox.store.records(entity)
            if (row.get("emailaddress1") or "").lower() == email.lower()]


def test_bulk_sync_matches_one_by_one_rules(connected_team, sandbox):
    client_setup = connected_team
    company = f"Bulk Co {unique_digits(6)}"
    existing_email = unique_email("bulk-existing")
    from integrations import connection

    dynamics = connection.client_for(client_setup.integration)
    existing = dynamics.create("leads", {"lastname": "Existing", "emailaddress1": existing_email})
    leads = [
        make_lead(client_setup.team, client_setup.member, last_name=f"New {index}",
                  email=unique_email(f"bulk{index}"), company=company, notes=f"Note {index}")
        for index in range(20)
    ]
    leads.append(make_lead(client_setup.team, client_setup.member, last_name="Existing",
                           email=existing_email, job_title="Updated in bulk"))
    sandbox.store.clear_request_log()

    logs = services.sync_leads_now([lead.pk for lead in leads])

    counts = sandbox.store.request_counts()
    accounts = [row for row in sandbox.store.records("account") if row["name"] == company]
    assert all(log.outcome in ("created", "updated") for log in logs.values())
    assert len(accounts) == 1
    assert counts["http_requests"] <= 3
    assert sandbox.store.get("lead", existing)["jobtitle"] == "Updated in bulk"
    for lead in leads[:20]:
        lead.refresh_from_db()
        record = sandbox.store.get("lead", lead.dynamics_record_id)
        notes = [row for row in sandbox.store.records("annotation")
                 if row.get("_objectid_value") == lead.dynamics_record_id]
        assert lead.sync_status == Lead.SyncStatus.SYNCED
        assert record["_parentaccountid_value"] == accounts[0]["accountid"]
        assert len(notes) == 1


def test_bulk_same_person_twice_one_record(connected_team, sandbox):
    email = unique_email("bulk-twice")
    first = make_lead(connected_team.team, connected_team.member, last_name="Twice",
                      email=email)
    second = make_lead(connected_team.team, connected_team.member, last_name="Twice",
                       email=email, job_title="Second")

    logs = services.sync_leads_now([first.pk, second.pk])

    assert logs[first.pk].outcome == SyncLog.Outcome.CREATED
    assert logs[second.pk].outcome == SyncLog.Outcome.UPDATED
    assert len(records_with_email(sandbox, "lead", email)) == 1


def test_bulk_bad_lead_does_not_stop_others(connected_team, sandbox):
    good = make_lead(connected_team.team, connected_team.member, last_name="Good",
                     email=unique_email("bulk-good"))
    bad = make_lead(connected_team.team, connected_team.member, last_name="Bad",
                    email=unique_email("bulk-bad"))
    from integrations.models import FieldMapping

    # A mapping to a column the org lacks fails that lead's change set in bulk; the
    # one-lead path then drops the column.
    FieldMapping.objects.create(integration=connected_team.integration, entity="lead",
                                column="new_missing", fixed_value="x")

    logs = services.sync_leads_now([good.pk, bad.pk])

    assert logs[good.pk].outcome == SyncLog.Outcome.CREATED
    assert logs[bad.pk].outcome == SyncLog.Outcome.CREATED
    assert logs[bad.pk].details["skipped_fields"][0]["column"] == "new_missing"
