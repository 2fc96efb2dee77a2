"""Sync under faults: 5xx responses, lost responses, throttling and a revoked sign-in."""

import ast
import importlib

import pytest
from django.utils import timezone

from dynamics_sandbox.testing import start_sandbox
from integrations import claims, services
from integrations.models import Integration
from leads.models import Lead
from teams.tests.factories import make_lead

from .conftest import ConnectedTeam, connect_through_sign_in, point_settings_at, unique_digits
from .task_queue import run_queued_tasks

pytestmark = pytest.mark.django_db


@pytest.fixture
def faulty_sandbox(tmp_path, settings):
    """A sandbox of its own, so its faults never reach other tests."""
    running = start_sandbox(tmp_path / "faulty", fault_seed=20261204)
    point_settings_at(settings, running)
    yield running
    running.stop()




def run_scheduled_tasks():
    """Run the retries scheduled with django-q2 now, ignoring their time; return how many
    ran."""
    from django_q.models import Schedule

    count = 0
    for entry in Schedule.objects.exclude(name=claims.SWEEP_SCHEDULE_NAME):
        module, name = entry.func.rsplit(".", 1)
        arguments = ast.literal_eval(entry.args) if entry.args else ()
        entry.delete()
        getattr(importlib.import_module(module), name)(*arguments)
        count += 1
    return count


def test_throttled_bulk_retries_later(client, faulty_sandbox):
    from django_q.models import Schedule

    setup = ConnectedTeam(client, faulty_sandbox)
    leads = capture_many(setup, 10, people_repeated=0)
    faulty_sandbox.faults.throttle_next(20, retry_after=90)
    sandbox_requests = faulty_sandbox.store.request_counts()["http_requests"]

    services.sync_leads_now([lead.pk for lead in leads])

    statuses = set(Lead.objects.filter(pk__in=[lead.pk for lead in leads])
                   .values_list("sync_status", flat=True))
    entry = Schedule.objects.exclude(name=claims.SWEEP_SCHEDULE_NAME).get()
    used = faulty_sandbox.store.request_counts()["http_requests"] - sandbox_requests
    assert statuses == {Lead.SyncStatus.QUEUED}
    assert entry.func == services.BULK_SYNC_TASK
    assert (entry.next_run - timezone.now()).total_seconds() > 80
    assert used <= 2


def capture_many(setup, count, people_repeated=20):
    """Capture `count` leads with companies and notes; some people are captured twice."""
    tag = unique_digits(6)
    leads = []
    for index in range(count):
        person = index % (count - people_repeated)
        leads.append(make_lead(
            setup.team, setup.member, first_name="Fault", last_name=f"Person {person}",
            email=f"fault.{tag}.{person}@company{person % 25}.example",
            company=f"Fault Company {tag} {person % 25}", notes=f"Capture {index}",
        ))
    return leads


def test_bulk_sync_under_faults_lands_each_lead_once(client, faulty_sandbox):
    setup = ConnectedTeam(client, faulty_sandbox)
    leads = capture_many(setup, 520)
    faulty_sandbox.faults.update(error_rate=0.05, drop_rate=0.02)
    faulty_sandbox.faults.throttle_next(8, retry_after=1)

    lead_ids = [lead.pk for lead in leads]
    for start in range(0, 400, services.BULK_TASK_SIZE):
        services.sync_leads_now(lead_ids[start:min(start + services.BULK_TASK_SIZE, 400)])
    for lead_id in lead_ids[400:]:
        services.sync_lead_now(lead_id)
    # Retries that ran out inside a task were scheduled for later; run them now.
    for _ in range(services.MAX_SYNC_ATTEMPTS):
        if not run_scheduled_tasks():
            break
    faulty_sandbox.faults.reset()

    store = faulty_sandbox.store
    people = {lead.email for lead in leads}
    records = [row for row in store.records("lead") if row.get("emailaddress1") in people]
    notes = [row for row in store.records("annotation")
             if (row.get("notetext") or "").startswith("Capture ")]
    companies = {lead.company for lead in leads}
    accounts = [row for row in store.records("account") if row["name"] in companies]
    statuses = set(Lead.objects.filter(pk__in=lead_ids).values_list("sync_status", flat=True))
    assert statuses == {Lead.SyncStatus.SYNCED}
    assert len(records) == len(people)
    assert len({row["emailaddress1"] for row in records}) == len(people)
    assert len(notes) == len(leads)
    assert len({row["notetext"] for row in notes}) == len(leads)
    assert len(accounts) == len(companies)


def test_revoked_sign_in_parks_then_drains(client, faulty_sandbox,
                                           django_capture_on_commit_callbacks):
    setup = ConnectedTeam(client, faulty_sandbox)
    leads = capture_many(setup, 30, people_repeated=0)
    faulty_sandbox.store.expire_access_tokens()
    faulty_sandbox.store.revoke_refresh_tokens()

    services.sync_leads_now([lead.pk for lead in leads])

    integration = Integration.objects.get(pk=setup.integration.pk)
    parked = set(Lead.objects.filter(pk__in=[lead.pk for lead in leads])
                 .values_list("sync_status", flat=True))
    assert integration.status == Integration.Status.REAUTHORIZATION_NEEDED
    assert parked == {Lead.SyncStatus.PENDING}

    with django_capture_on_commit_callbacks(execute=True):
        connect_through_sign_in(client, setup.team, setup.admin, faulty_sandbox)
    run_queued_tasks()

    drained = set(Lead.objects.filter(pk__in=[lead.pk for lead in leads])
                  .values_list("sync_status", flat=True))
    assert Integration.objects.get(pk=setup.integration.pk).status == "connected"
    assert drained == {Lead.SyncStatus.SYNCED}
