"""Many worker processes sync one stream of captured leads, and one of them is killed.

Three `manage.py qcluster` processes (two workers each) sync leads captured through the
API while they run, against a sandbox that adds latency and transient errors. One
cluster is killed with SIGKILL midway, which loses the tasks it held and leaves the
leads it claimed behind. The sweep and claim expiry must bring every lead into Dynamics,
and each exactly once.

The suite runs this on the database and broker it is configured with: SQLite and the ORM
broker by default, PostgreSQL and Redis in the scale-out run of .ci/run.
"""

import logging
import time
from collections import Counter
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone
from django_q.models import Schedule
from rest_framework.authtoken.models import Token

from dynamics_sandbox.testing import start_sandbox
from integrations import claims
from integrations.models import SyncLog
from leads.models import Lead
from teams.tests.factories import make_member

from .conftest import ConnectedTeam, point_settings_at, unique_digits
from .workers import kill_worker, start_worker, stop_worker, worker_environment

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
logger = logging.getLogger(__name__)

LEAD_COUNT = 2000
# Members of the capturing team; each stays under the capture throttle of 120 a minute.
MEMBER_COUNT = 25
WORKER_COUNT = 3
# Captures posted before one worker is killed.
KILL_AFTER = LEAD_COUNT // 2
# Short timings so that the killed worker's leads come back within the test: tasks are
# killed after Q_TIMEOUT, claims expire after SYNC_CLAIM_SECONDS, and the sweep, which
# runs each minute, queues leads that waited SYNC_STALE_SECONDS.
WORKER_SETTINGS = {
    "Q_WORKERS": 2,
    "Q_TIMEOUT": 20,
    "SYNC_CLAIM_SECONDS": 25,
    "SYNC_STALE_SECONDS": 10,
    "SYNC_SWEEP_MINUTES": 1,
}
FINISH_TIMEOUT = 420


@pytest.fixture
def busy_sandbox(tmp_path, settings):
    """A sandbox with network latency and transient faults, and no request quota."""
    running = start_sandbox(
        tmp_path / "busy", latency_ms=10, operation_ms=2, rate_limit_requests=1_000_000,
        rate_limit_execution_ms=100_000_000, fault_error_rate=0.02, fault_drop_rate=0.005,
        fault_seed=20261204,
    )
    point_settings_at(settings, running)
    yield running
    running.stop()


@pytest.fixture
def workers(busy_sandbox, tmp_path):
    env = worker_environment(busy_sandbox, **WORKER_SETTINGS)
    processes = [start_worker(env, Path(settings.VAR_DIR) / f"test-worker-{index}.log")
                 for index in range(WORKER_COUNT)]
    yield processes
    for process in processes:
        stop_worker(process)


def sweep_every_minute():
    claims.schedule_sweep()
    Schedule.objects.filter(name=claims.SWEEP_SCHEDULE_NAME).update(
        minutes=1, next_run=timezone.now())


def capture_all(client, members, tag, on_halfway):
    tokens = [Token.objects.create(user=member).key for member in members]
    ids = []
    for index in range(LEAD_COUNT):
        if index == KILL_AFTER:
            on_halfway()
        response = client.post(
            "/api/leads/",
            {"first_name": "Crowd", "last_name": f"Visitor {index}",
             "email": f"crowd.{tag}.{index}@visitor{index % 40}.example",
             "company": f"Visitor Company {tag} {index % 40}",
             "notes": f"Met at booth {index % 7}"},
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Token {tokens[index % len(tokens)]}",
        )
        assert response.status_code == 201, response.content[:300]
        ids.append(response.json()["id"])
    return ids


def wait_until_settled(lead_ids, processes):
    deadline = time.monotonic() + FINISH_TIMEOUT
    while time.monotonic() < deadline:
        statuses = Counter(Lead.objects.filter(pk__in=lead_ids)
                           .values_list("sync_status", flat=True))
        if statuses[Lead.SyncStatus.QUEUED] == 0:
            return statuses
        alive = [process for process in processes if process.poll() is None]
        assert alive, "every worker process exited"
        time.sleep(1)
    raise AssertionError(f"Leads still not synced after {FINISH_TIMEOUT} s: {statuses}")


def test_killed_worker_loses_no_lead(client, busy_sandbox, workers):
    setup = ConnectedTeam(client, busy_sandbox)
    members = [setup.member] + [make_member(setup.team) for _ in range(MEMBER_COUNT - 1)]
    sweep_every_minute()
    tag = unique_digits(8)
    killed = workers[0]
    started = time.monotonic()

    lead_ids = capture_all(client, members, tag, on_halfway=lambda: kill_worker(killed))
    captured_in = time.monotonic() - started
    statuses = wait_until_settled(lead_ids, workers[1:])
    finished_in = time.monotonic() - started

    leads = list(Lead.objects.filter(pk__in=lead_ids))
    records = [row for row in busy_sandbox.store.records("lead")
               if f".{tag}." in (row.get("emailaddress1") or "")]
    per_email = Counter(row["emailaddress1"] for row in records)
    notes = [row for row in busy_sandbox.store.records("annotation")
             if row.get("_objectid_value") in {record["leadid"] for record in records}]
    accounts = Counter(row["name"] for row in busy_sandbox.store.records("account")
                       if f" {tag} " in (row.get("name") or ""))
    retried = SyncLog.objects.filter(lead_id__in=lead_ids,
                                     outcome=SyncLog.Outcome.RETRYING).count()
    logger.info("%s: %d leads captured in %.1f s, all settled in %.1f s; %d retries",
                connection.vendor, LEAD_COUNT, captured_in, finished_in, retried)

    assert killed.poll() is not None
    assert statuses == {Lead.SyncStatus.SYNCED: LEAD_COUNT}
    assert len(records) == LEAD_COUNT
    assert max(per_email.values()) == 1
    assert {lead.dynamics_record_id for lead in leads} == {row["leadid"] for row in records}
    assert len(notes) == LEAD_COUNT
    assert len(accounts) == 40
    assert max(accounts.values()) == 1
    assert all(lead.sync_claim == "" for lead in leads)
