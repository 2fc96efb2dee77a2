"""Latency model and service protection limits: execution time, requests, concurrency."""

import threading
import time

import pytest

from dynamics_sandbox import seed
from dynamics_sandbox.conftest import Api
from dynamics_sandbox.testing import start_sandbox
from dynamics_sandbox.tests.test_batch import API_PATH, lead, request_part, send_batch


def api_for(running, user_id=seed.SAM_ID):
    """Return an Api with an access token issued directly into the store."""
    token = running.store.add_grant(
        "access", user_id, running.client_id, 3600,
        {"audience": running.base_url, "scope": ""},
    )
    return Api(running, token)


@pytest.fixture
def start(tmp_path):
    """Start sandboxes with custom settings and stop them after the test."""
    started = []

    def start_with(**settings):
        running = start_sandbox(tmp_path / f"sandbox{len(started)}", **settings)
        started.append(running)
        return running

    yield start_with
    for running in started:
        running.stop()


def error_of(response):
    return response.json()["error"]


def time_remaining(response):
    return float(response.headers["x-ms-ratelimit-time-remaining-xrm-requests"].replace(",", ""))


def test_batch_costs_operation_time(start, email):
    running = start(operation_ms=40)
    api = api_for(running)
    started = time.monotonic()
    response = send_batch(api, [
        request_part("POST", API_PATH + "leads", lead(email)) for _ in range(5)
    ])
    elapsed_ms = (time.monotonic() - started) * 1000
    operations = running.store.requests(kind="operation")
    assert response.status_code == 200
    assert elapsed_ms >= 5 * 40
    assert elapsed_ms < 5 * 40 + 1000
    assert len(operations) == 5
    assert all(operation["duration_ms"] >= 40 for operation in operations)


def test_batch_charges_execution_time(start, email):
    running = start(operation_ms=40)
    api = api_for(running)
    response = send_batch(api, [
        request_part("POST", API_PATH + "leads", lead(email)) for _ in range(5)
    ])
    assert time_remaining(response) <= 1_200_000 - 5 * 40


def test_latency_once_per_request(start, email):
    running = start(latency_ms=150)
    api = api_for(running)
    started = time.monotonic()
    response = send_batch(api, [
        request_part("POST", API_PATH + "leads", lead(email)) for _ in range(5)
    ])
    elapsed_ms = (time.monotonic() - started) * 1000
    assert response.status_code == 200
    assert elapsed_ms >= 150
    assert elapsed_ms < 5 * 150


def test_latency_per_single_request(start):
    running = start(latency_ms=100)
    api = api_for(running)
    started = time.monotonic()
    for _ in range(3):
        api.get("WhoAmI")
    elapsed_ms = (time.monotonic() - started) * 1000
    assert elapsed_ms >= 3 * 100


def test_execution_time_limit(start):
    running = start(operation_ms=60, rate_limit_execution_ms=100)
    api = api_for(running)
    statuses = [api.get("WhoAmI").status_code for _ in range(2)]
    throttled = api.get("WhoAmI")
    assert statuses == [200, 200]
    assert throttled.status_code == 429
    assert error_of(throttled)["code"] == "0x80072321"
    assert int(throttled.headers["Retry-After"]) > 0
    assert error_of(throttled)["message"].startswith(
        "Combined execution time of incoming requests exceeded limit of 100  milliseconds"
    )


def test_execution_time_per_user(start):
    running = start(operation_ms=60, rate_limit_execution_ms=100)
    sam = api_for(running)
    for _ in range(2):
        sam.get("WhoAmI")
    response = api_for(running, seed.ALEX_ID).get("WhoAmI")
    assert response.status_code == 200


def test_batch_counts_one_request(start, email):
    running = start(rate_limit_requests=2)
    api = api_for(running)
    response = send_batch(api, [
        request_part("POST", API_PATH + "leads", lead(email)) for _ in range(5)
    ])
    assert response.status_code == 200
    assert response.headers["x-ms-ratelimit-burst-remaining-xrm-requests"] == "1"


def test_request_limit_message(start):
    running = start(rate_limit_requests=1)
    api = api_for(running)
    api.get("WhoAmI")
    throttled = api.get("WhoAmI")
    assert error_of(throttled)["message"] == (
        "Number of requests exceeded the limit of 1 over time window of 300 seconds."
    )


def test_concurrency_limit(start):
    # Each request takes 1 s, so the two overlap even when a busy machine starts the
    # thread late; whichever arrives second is rejected.
    running = start(operation_ms=1000, rate_limit_concurrent=1)
    api = api_for(running)
    responses = []

    def call():
        responses.append(api_for(running).get("WhoAmI"))

    worker = threading.Thread(target=call)
    worker.start()
    time.sleep(0.15)
    responses.append(api.get("WhoAmI"))
    worker.join(timeout=10)

    rejected = [response for response in responses if response.status_code == 429]
    assert sorted(response.status_code for response in responses) == [200, 429]
    assert error_of(rejected[0])["code"] == "0x80072326"
    assert error_of(rejected[0])["message"] == (
        "Number of concurrent requests exceeded the limit of 1.")


def test_time_remaining_header(sales_api):
    response = sales_api.get("WhoAmI")
    assert time_remaining(response) <= 1_200_000
    assert time_remaining(response) > 0


def test_latency_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SANDBOX_LATENCY_MS", "25")
    monkeypatch.setenv("SANDBOX_OPERATION_MS", "5")
    running = start_sandbox(tmp_path)
    try:
        settings = running._server.settings
    finally:
        running.stop()
    assert settings.latency_ms == 25
    assert settings.operation_ms == 5


def test_latency_environment_invalid(tmp_path, monkeypatch):
    monkeypatch.setenv("SANDBOX_OPERATION_MS", "-1")
    with pytest.raises(ValueError, match="SANDBOX_OPERATION_MS"):
        start_sandbox(tmp_path)


def test_no_fixed_delay(sales_api):
    sales_api.get("WhoAmI")
    started = time.monotonic()
    for _ in range(30):
        sales_api.get("WhoAmI")
    average_ms = (time.monotonic() - started) * 1000 / 30
    # Without TCP_NODELAY each response took about 44 ms on loopback.
    assert average_ms < 30
