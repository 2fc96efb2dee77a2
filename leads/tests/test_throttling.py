"""The capture throttle under concurrent captures and without a reachable cache."""

import os
import subprocess
import sys
import threading
from types import SimpleNamespace

import pytest
from django.conf import settings
from django.core.cache import cache
from django.utils import timezone
from django_q.conf import Conf
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from integrations.models import Integration
from leads.models import Lead
from leads.throttling import CaptureRateThrottle

pytestmark = pytest.mark.django_db

# Nothing listens on port 1 of the loopback address, so every connection is refused.
UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"


@pytest.fixture
def rate(settings):
    cache.clear()
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"capture": "5/min"},
    }
    yield
    cache.clear()


def post_capture(user, body):
    client = APIClient()
    token, _ = Token.objects.get_or_create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client.post("/api/leads/", body, format="json")


def test_concurrent_captures_stay_under_rate(two_teams, rate):
    request = SimpleNamespace(user=two_teams.member_a)
    allowed = []
    start = threading.Barrier(12)

    def capture():
        start.wait()
        allowed.append(CaptureRateThrottle().allow_request(request, None))

    threads = [threading.Thread(target=capture) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert len(allowed) == 12
    assert allowed.count(True) == 5


def test_rejected_capture_does_not_count(two_teams, rate):
    request = SimpleNamespace(user=two_teams.member_a)
    throttle = CaptureRateThrottle()
    results = [throttle.allow_request(request, None) for _ in range(8)]
    window = int(throttle.timer() // throttle.duration)

    assert results == [True] * 5 + [False] * 3
    assert cache.get(f"{throttle.get_cache_key(request, None)}:{window}") == 5
    assert 0 < throttle.wait() <= 61


def captures_at(request, second, count):
    """Try `count` captures at `second` on a fixed clock; return the results and the
    last wait."""
    throttle = CaptureRateThrottle()
    throttle.timer = lambda: second
    results = [throttle.allow_request(request, None) for _ in range(count)]
    return results, throttle.wait()


def test_burst_across_minute_boundary_is_held(two_teams, rate):
    request = SimpleNamespace(user=two_teams.member_b)
    minute = 60 * 29_000_000

    before, _ = captures_at(request, minute - 1, 5)
    after, wait = captures_at(request, minute + 1, 5)
    halfway, _ = captures_at(request, minute + 30, 5)

    assert before == [True] * 5
    # The previous minute still counts floor(5 * 59/60) = 4, so one capture fits.
    assert after == [True] + [False] * 4
    # The next fits once 5 * (1 - elapsed) < 5 - 1, after 12 s into the minute.
    assert wait == 12
    # Halfway through, the previous minute counts floor(2.5) = 2, beside the 1 above.
    assert halfway == [True, True, False, False, False]


def test_full_minute_waits_into_next(two_teams, rate):
    request = SimpleNamespace(user=two_teams.member_b)
    minute = 60 * 29_000_001

    results, wait = captures_at(request, minute + 50, 6)
    at_boundary, _ = captures_at(request, minute + 60, 1)
    after_wait, _ = captures_at(request, minute + 50 + wait, 1)

    assert results == [True] * 5 + [False]
    # The full minute weighs 5 until the next minute has begun.
    assert wait == 11
    assert at_boundary == [False]
    assert after_wait == [True]


def test_rate_of_one_per_minute(two_teams, settings, rate):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"capture": "1/min"},
    }
    request = SimpleNamespace(user=two_teams.member_b)
    minute = 60 * 29_000_002

    first, wait = captures_at(request, minute + 10, 2)
    second, _ = captures_at(request, minute + 71, 1)

    assert first == [True, False]
    assert wait == 51
    assert second == [True]


def test_rate_of_zero_rejects_with_wait(two_teams, settings, rate):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"capture": "0/min"},
    }
    request = SimpleNamespace(user=two_teams.member_b)

    results, wait = captures_at(request, 60 * 29_000_003, 2)

    assert results == [False, False]
    assert wait == 60


def test_unreachable_cache_lets_captures_through(two_teams, settings, caplog):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"capture": "5/min"},
    }
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                   "LOCATION": UNREACHABLE_REDIS}}
    CaptureRateThrottle._last_cache_warning = 0.0

    statuses = [post_capture(two_teams.member_a, {"company": f"Open {index}"}).status_code
                for index in range(7)]

    assert statuses == [201] * 7
    assert "cannot reach the cache" in caplog.text


def test_unreachable_broker_keeps_lead_queued(two_teams, monkeypatch, caplog,
                                              django_capture_on_commit_callbacks):
    Integration.objects.create(team=two_teams.team_a, org_url="https://org.example",
                               status=Integration.Status.CONNECTED)
    monkeypatch.setattr(Conf, "ORM", None)
    monkeypatch.setattr(Conf, "DJANGO_REDIS", None)
    monkeypatch.setattr(Conf, "REDIS", UNREACHABLE_REDIS)

    with django_capture_on_commit_callbacks(execute=True):
        response = post_capture(two_teams.member_a, {"email": "kept@example.org"})

    lead = Lead.objects.get(email="kept@example.org")
    assert response.status_code == 201
    assert lead.sync_status == Lead.SyncStatus.QUEUED
    assert lead.sync_queued_at <= timezone.now()
    assert "Could not enqueue the sync of 1 leads" in caplog.text


def start_django(value):
    """Start Django in a new process with LEAD_CAPTURE_RATE set to `value`."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings_test",
           "LEAD_CAPTURE_RATE": value}
    return subprocess.run([sys.executable, "-c", "import django; django.setup()"],
                          cwd=settings.BASE_DIR, env=env, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("value", ["abc", "", "1.5/min", "10/fortnight", "2/5min", "-1/min",
                                  "0/min", "120/min # per member"])
def test_invalid_capture_rate_stops_start(value):
    started = start_django(value)

    assert started.returncode != 0
    assert "LEAD_CAPTURE_RATE must be a number of captures of at least 1" in started.stderr
    assert f"got {value!r}" in started.stderr


@pytest.mark.parametrize("value", ["30/hour", "5/s", "1000/day", " 120/MIN ", "60/minutes"])
def test_valid_capture_rate_starts(value):
    assert start_django(value).returncode == 0
