"""End to end: sign in through MSAL, capture through the API, a real django-q2 worker
process syncs the lead into the sandbox over HTTPS."""

import time
from pathlib import Path

import pytest
from django.conf import settings
from rest_framework.authtoken.models import Token

from integrations.models import SyncLog
from leads.models import Lead

from .conftest import ConnectedTeam, unique_digits, unique_email
from .workers import start_worker, stop_worker, worker_environment

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def worker(sandbox, dynamics_settings):
    """Start `manage.py qcluster` on the test database; stop it after the test."""
    process = start_worker(worker_environment(sandbox),
                           Path(settings.VAR_DIR) / "test-worker.log")
    yield process
    stop_worker(process)


def wait_for_sync(lead_id, worker, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lead = Lead.objects.get(pk=lead_id)
        if lead.sync_status in (Lead.SyncStatus.SYNCED, Lead.SyncStatus.FAILED):
            return lead
        assert worker.poll() is None, "the worker process exited"
        time.sleep(0.2)
    raise AssertionError(f"lead {lead_id} still {lead.sync_status} after {timeout} s")


def post_lead(client, member, payload):
    token = Token.objects.create(user=member)
    return client.post("/api/leads/", payload, content_type="application/json",
                       HTTP_AUTHORIZATION=f"Token {token.key}")


def test_captured_lead_lands_in_dynamics(client, sandbox, dynamics_settings, worker):
    setup = ConnectedTeam(client, sandbox)
    email = unique_email("e2e")
    payload = {"first_name": "Zoë", "last_name": "Brontë", "email": email,
               "phone": f"+44 20 7946 {unique_digits(4)}", "company": "Northmoor & Sons",
               "job_title": "Director", "website": "northmoor.example"}

    response = post_lead(client, setup.member, payload)
    assert response.status_code == 201
    lead = wait_for_sync(response.json()["id"], worker)

    record = next(row for row in sandbox.store.records("lead")
                  if row["leadid"] == lead.dynamics_record_id)
    assert lead.sync_status == Lead.SyncStatus.SYNCED, lead.last_sync_error
    assert record["firstname"] == "Zoë"
    assert record["lastname"] == "Brontë"
    assert record["emailaddress1"] == email
    assert record["telephone1"] == payload["phone"]
    assert record["companyname"] == "Northmoor & Sons"
    assert record["jobtitle"] == "Director"
    assert record["websiteurl"] == "northmoor.example"


def test_capturing_twice_updates_one_lead(client, sandbox, dynamics_settings, worker):
    setup = ConnectedTeam(client, sandbox)
    email = unique_email("twice")

    first = post_lead(client, setup.member, {"last_name": "Twice", "email": email})
    first_lead = wait_for_sync(first.json()["id"], worker)
    second = post_lead(client, setup.admin,
                       {"last_name": "Twice", "email": email, "company": "Second"})
    second_lead = wait_for_sync(second.json()["id"], worker)

    records = [row for row in sandbox.store.records("lead")
               if row.get("emailaddress1") == email]
    assert len(records) == 1
    assert second_lead.dynamics_record_id == first_lead.dynamics_record_id
    assert records[0]["companyname"] == "Second"
    assert SyncLog.objects.get(lead=second_lead).outcome == SyncLog.Outcome.UPDATED
