"""The sync engine and services against the sandbox, run in-process without a worker."""

import pytest
from django.contrib.auth import get_user_model

from integrations import services
from integrations.sync import engine
from integrations.models import Integration, SyncLog
from leads.models import Lead
from teams.tests.factories import make_lead, make_member

from .conftest import (
    SANDBOX_ADMIN, SANDBOX_READER, SANDBOX_SALES, ConnectedTeam, unique_digits, unique_email,
)
from .task_queue import queued_lead_ids

pytestmark = pytest.mark.django_db


def sandbox_lead(sandbox, record_id):
    return next(row for row in sandbox.store.records("lead") if row["leadid"] == record_id)


def sandbox_leads_with_email(sandbox, email):
    return [row for row in sandbox.store.records("lead")
            if (row.get("emailaddress1") or "").lower() == email.lower()]


def sandbox_user_id(sandbox, email):
    return next(row["systemuserid"] for row in sandbox.store.records("systemuser")
                if row["internalemailaddress"] == email)


def capture(team_setup, member=None, **fields):
    return make_lead(team_setup.team, member or team_setup.member, **fields)


def test_sync_creates_lead_with_default_mappings(connected_team, sandbox):
    email = unique_email("ada")
    lead = capture(connected_team, first_name="Ada", last_name="Lovelace", email=email,
                   phone=f"+44 20 7946 {unique_digits(4)}", company="Analytical Engines",
                   job_title="Mathematician", website="https://engines.example")

    log = services.sync_lead_now(lead.pk)

    lead.refresh_from_db()
    record = sandbox_lead(sandbox, lead.dynamics_record_id)
    assert log.outcome == SyncLog.Outcome.CREATED
    assert lead.sync_status == Lead.SyncStatus.SYNCED
    assert lead.dynamics_entity == "lead"
    assert record["firstname"] == "Ada"
    assert record["lastname"] == "Lovelace"
    assert record["emailaddress1"] == email
    assert record["telephone1"] == lead.phone
    assert record["companyname"] == "Analytical Engines"
    assert record["jobtitle"] == "Mathematician"
    assert record["websiteurl"] == "https://engines.example"


def test_sync_owner_defaults_to_integration_user(connected_team, sandbox):
    lead = capture(connected_team, email=unique_email())
    services.sync_lead_now(lead.pk)
    lead.refresh_from_db()
    record = sandbox_lead(sandbox, lead.dynamics_record_id)
    assert record["_ownerid_value"] == sandbox_user_id(sandbox, SANDBOX_ADMIN)


def test_sync_owner_is_members_dynamics_user(connected_team, sandbox):
    member = get_user_model().objects.create_user(username="sam", email=SANDBOX_SALES)
    make_member(connected_team.team, member)
    lead = capture(connected_team, member=member, email=unique_email())
    services.sync_lead_now(lead.pk)
    lead.refresh_from_db()
    record = sandbox_lead(sandbox, lead.dynamics_record_id)
    assert record["_ownerid_value"] == sandbox_user_id(sandbox, SANDBOX_SALES)


def test_same_person_twice_updates_one_lead(connected_team, sandbox):
    email = unique_email("twice")
    first = capture(connected_team, first_name="Grace", last_name="Hopper", email=email)
    second = capture(connected_team, first_name="Grace", last_name="Hopper",
                     email=email.upper(), job_title="Rear Admiral")

    services.sync_lead_now(first.pk)
    log = services.sync_lead_now(second.pk)

    first.refresh_from_db()
    second.refresh_from_db()
    records = sandbox_leads_with_email(sandbox, email)
    assert log.outcome == SyncLog.Outcome.UPDATED
    assert len(records) == 1
    assert second.dynamics_record_id == first.dynamics_record_id
    assert records[0]["jobtitle"] == "Rear Admiral"
    assert any("matches by email" in step for step in log.path)


def test_match_by_phone(connected_team, sandbox):
    phone = f"+1 415 555 {unique_digits(4)}"
    first = capture(connected_team, phone=phone, email="")
    second = capture(connected_team, phone=phone, email="", company="Phone Match Inc")
    services.sync_lead_now(first.pk)
    log = services.sync_lead_now(second.pk)
    second.refresh_from_db()
    first.refresh_from_db()
    assert any("matches by phone" in step for step in log.path)
    assert second.dynamics_record_id == first.dynamics_record_id


@pytest.mark.parametrize("local_part", ["o'neil", "dana+expo", "amp&hash#"])
def test_match_with_reserved_characters(connected_team, sandbox, local_part):
    email = f"{local_part}.{unique_email()}"
    first = capture(connected_team, email=email)
    second = capture(connected_team, email=email, job_title="Second capture")
    services.sync_lead_now(first.pk)
    log = services.sync_lead_now(second.pk)
    assert log.outcome == SyncLog.Outcome.UPDATED
    assert len(sandbox_leads_with_email(sandbox, email)) == 1


def test_crafted_email_matches_nothing(connected_team, sandbox):
    victim = capture(connected_team, email=unique_email("victim"))
    services.sync_lead_now(victim.pk)
    crafted = capture(connected_team, email="x' or emailaddress1 ne 'y")
    log = services.sync_lead_now(crafted.pk)
    crafted.refresh_from_db()
    victim.refresh_from_db()
    assert log.outcome == SyncLog.Outcome.CREATED
    assert crafted.dynamics_record_id != victim.dynamics_record_id


def test_resync_updates_same_record(connected_team, sandbox):
    lead = capture(connected_team, email=unique_email(), company="Before")
    services.sync_lead_now(lead.pk)
    Lead.objects.filter(pk=lead.pk).update(company="After")
    log = services.sync_lead_now(lead.pk)
    lead.refresh_from_db()
    assert log.outcome == SyncLog.Outcome.UPDATED
    assert any("synced from this lead before" in step for step in log.path)
    assert sandbox_lead(sandbox, lead.dynamics_record_id)["companyname"] == "After"


def test_retried_create_does_not_duplicate(connected_team, sandbox):
    """A create whose response was lost left the record; the retry must update it."""
    lead = capture(connected_team, email="", phone="", company=f"Lost {unique_email()}")
    integration = connected_team.integration
    sync_settings = services.sync_settings_for(integration, lead)
    record_id = sync_settings.record_id("lead", engine.identity_key(lead, sync_settings))
    from integrations.connection import client_for

    client_for(integration).create("leads", {"leadid": record_id, "lastname": "Earlier"})

    log = services.sync_lead_now(lead.pk)

    lead.refresh_from_db()
    matching = [row for row in sandbox.store.records("lead") if row["leadid"] == record_id]
    assert log.outcome == SyncLog.Outcome.UPDATED
    assert lead.dynamics_record_id == record_id
    assert len(matching) == 1


def test_update_keeps_values_of_empty_fields(connected_team, sandbox):
    email = unique_email()
    first = capture(connected_team, email=email, job_title="Engineer")
    second = capture(connected_team, email=email, job_title="")
    services.sync_lead_now(first.pk)
    services.sync_lead_now(second.pk)
    second.refresh_from_db()
    assert sandbox_lead(sandbox, second.dynamics_record_id)["jobtitle"] == "Engineer"


def test_missing_privilege_fails_with_reason(client, sandbox, dynamics_settings):
    reader_team = ConnectedTeam(client, sandbox, dynamics_email=SANDBOX_READER)
    lead = capture(reader_team, email=unique_email())

    log = services.sync_lead_now(lead.pk)

    lead.refresh_from_db()
    assert log.outcome == SyncLog.Outcome.FAILED
    assert lead.sync_status == Lead.SyncStatus.FAILED
    assert "lacks a privilege" in lead.last_sync_error
    assert "is missing prvCreate" in lead.last_sync_error


def test_broken_sign_in_keeps_lead_pending(connected_team):
    Integration.objects.filter(pk=connected_team.integration.pk).update(
        msal_account_id="someone-else"
    )
    lead = capture(connected_team, email=unique_email())

    services.sync_lead_now(lead.pk)

    lead.refresh_from_db()
    integration = Integration.objects.get(pk=connected_team.integration.pk)
    assert lead.sync_status == Lead.SyncStatus.PENDING
    assert "reconnect" in lead.last_sync_error
    assert integration.status == Integration.Status.REAUTHORIZATION_NEEDED


def test_sync_of_deleted_lead_is_skipped(connected_team):
    assert services.sync_lead_now(999999) is None


def test_admin_action_queues_failed_lead(connected_team, client,
                                         django_capture_on_commit_callbacks):
    lead = capture(connected_team, email=unique_email("retry"))
    Lead.objects.filter(pk=lead.pk).update(sync_status=Lead.SyncStatus.FAILED,
                                           last_sync_error="Dynamics was unreachable")
    client.force_login(connected_team.admin)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/admin/leads/lead/", {
            "action": "sync_to_dynamics", "_selected_action": [lead.pk],
        }, follow=True)

    lead.refresh_from_db()
    assert "Queued 1 lead(s)" in response.content.decode()
    assert lead.sync_status == Lead.SyncStatus.QUEUED
    assert queued_lead_ids() == [lead.pk]


def test_admin_action_explains_unconnected(client, dynamics_settings,
                                           django_capture_on_commit_callbacks):
    from teams.tests.factories import make_admin, make_team

    team = make_team()
    admin_user = make_admin(team)
    lead = make_lead(team, admin_user, email=unique_email("lonely"))
    client.force_login(admin_user)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/admin/leads/lead/", {
            "action": "sync_to_dynamics", "_selected_action": [lead.pk],
        }, follow=True)
    assert "no Dynamics integration is set up" in response.content.decode()


def test_sign_in_unreachable_fails_lead_readably(connected_team, settings):
    """The token needs renewing while the sign-in server is down."""
    from integrations import connection

    settings.DYNAMICS_AUTHORITY = "https://127.0.0.1:9/sandbox-tenant"
    connection._msal_http_cache.clear()
    lead = capture(connected_team, email=unique_email("offline"))

    log = services.sync_lead_now(lead.pk)

    lead.refresh_from_db()
    assert log.outcome == SyncLog.Outcome.RETRYING
    assert lead.sync_status == Lead.SyncStatus.QUEUED
    assert "Could not reach the Microsoft sign-in" in lead.last_sync_error
    assert "runs again at" in lead.last_sync_error
    assert lead.email not in lead.last_sync_error


def test_transient_failure_gives_up_after_max_attempts(connected_team, settings):
    from integrations import connection

    settings.DYNAMICS_AUTHORITY = "https://127.0.0.1:9/sandbox-tenant"
    connection._msal_http_cache.clear()
    lead = capture(connected_team, email=unique_email("gave-up"))
    Lead.objects.filter(pk=lead.pk).update(sync_attempts=services.MAX_SYNC_ATTEMPTS - 1)

    log = services.sync_lead_now(lead.pk)

    lead.refresh_from_db()
    assert log.outcome == SyncLog.Outcome.FAILED
    assert lead.sync_status == Lead.SyncStatus.FAILED
    assert "sync the lead again later" in lead.last_sync_error


def test_resyncs_keep_retry_budget(connected_team, settings):
    from integrations import connection

    lead = capture(connected_team, email=unique_email("budget"))
    for _ in range(services.MAX_SYNC_ATTEMPTS):
        assert services.sync_lead_now(lead.pk).outcome in (SyncLog.Outcome.CREATED,
                                                           SyncLog.Outcome.UPDATED)
    settings.DYNAMICS_AUTHORITY = "https://127.0.0.1:9/sandbox-tenant"
    connection._msal_http_cache.clear()
    Lead.objects.filter(pk=lead.pk).update(sync_status=Lead.SyncStatus.QUEUED)

    log = services.sync_lead_now(lead.pk)

    lead.refresh_from_db()
    assert log.outcome == SyncLog.Outcome.RETRYING
    assert lead.sync_status == Lead.SyncStatus.QUEUED
    assert f"attempt 2 of {services.MAX_SYNC_ATTEMPTS}" in lead.last_sync_error
