"""The cross-process cap on concurrent requests to one org."""

import threading

import pytest
from django.db import connections
from django.utils import timezone

from dynamics_sandbox.testing import start_sandbox
from integrations import connection
from integrations.client import errors
from integrations.concurrency import OrgRequestLimiter
from integrations.models import Integration, RequestSlot

from .conftest import ConnectedTeam, point_settings_at


@pytest.mark.django_db
def test_slots_limit_holders():
    limiter = OrgRequestLimiter("https://org.example", max_concurrent=2, wait_seconds=0.2)
    with limiter.slot() as first, limiter.slot() as second:
        with pytest.raises(errors.Throttled):
            with limiter.slot():
                pass
    assert {first, second} == {0, 1}


@pytest.mark.django_db
def test_slot_released_after_block():
    limiter = OrgRequestLimiter("https://org.example", max_concurrent=1, wait_seconds=0.2)
    with limiter.slot():
        pass
    with limiter.slot() as number:
        assert number == 0
    assert RequestSlot.objects.get(org="org.example").holder == ""


@pytest.mark.django_db
def test_expired_lease_taken_over():
    limiter = OrgRequestLimiter("https://org.example", max_concurrent=1, wait_seconds=0.2)
    limiter._ensure_rows()
    RequestSlot.objects.filter(org="org.example").update(
        holder="dead-worker", expires_at=timezone.now() - timezone.timedelta(seconds=1))
    with limiter.slot() as number:
        assert number == 0


@pytest.mark.django_db
def test_orgs_have_separate_slots():
    first = OrgRequestLimiter("https://one.example", max_concurrent=1, wait_seconds=0.2)
    second = OrgRequestLimiter("https://two.example", max_concurrent=1, wait_seconds=0.2)
    with first.slot(), second.slot():
        assert RequestSlot.objects.exclude(holder="").count() == 2


@pytest.fixture
def narrow_sandbox(tmp_path, settings):
    """A sandbox that accepts 3 concurrent requests and works 50 ms on each."""
    running = start_sandbox(tmp_path / "narrow", rate_limit_concurrent=3, operation_ms=50)
    point_settings_at(settings, running)
    yield running
    running.stop()


def hammer(integration, limit, threads=8, requests_each=3):
    """Send requests from several threads; return the concurrency errors they got."""
    failures = []

    def worker():
        try:
            client = connection.client_for(integration)
            client.max_retries = 0
            if limit is None:
                client.limiter = None
            else:
                client.limiter = OrgRequestLimiter(integration.org_url, max_concurrent=limit)
            for _ in range(requests_each):
                try:
                    client.who_am_i()
                except errors.Throttled as error:
                    failures.append(error.code)
        finally:
            connections.close_all()

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(60)
    return failures


@pytest.mark.django_db(transaction=True)
def test_cap_keeps_under_org_limit(client, narrow_sandbox):
    setup = ConnectedTeam(client, narrow_sandbox)
    integration = Integration.objects.get(pk=setup.integration.pk)
    assert hammer(integration, limit=3) == []


@pytest.mark.django_db(transaction=True)
def test_without_cap_org_limit_hit(client, narrow_sandbox):
    """Shows that the test above can fail: without the cap the sandbox rejects some."""
    setup = ConnectedTeam(client, narrow_sandbox)
    integration = Integration.objects.get(pk=setup.integration.pk)
    assert "0x80072326" in hammer(integration, limit=None)


@pytest.mark.django_db(transaction=True)
def test_concurrent_renewals_all_succeed(client, sandbox, dynamics_settings):
    """Workers whose token expired together all go on; none flags re-authorization."""
    setup = ConnectedTeam(client, sandbox)
    integration = Integration.objects.get(pk=setup.integration.pk)
    connection.client_for(integration).who_am_i()
    sandbox.store.expire_access_tokens()
    problems = []
    start = threading.Barrier(6)

    def worker():
        try:
            own_client = connection.client_for(Integration.objects.get(pk=integration.pk))
            start.wait()
            own_client.who_am_i()
        except Exception as error:  # Reported by the assert below.
            problems.append(error)
        finally:
            connections.close_all()

    pool = [threading.Thread(target=worker) for _ in range(6)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(60)

    integration.refresh_from_db()
    assert problems == []
    assert integration.status == Integration.Status.CONNECTED
