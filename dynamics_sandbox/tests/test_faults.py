"""Fault injection: transient errors, lost responses, 429 bursts, token faults."""

import pytest
import requests

from dynamics_sandbox import seed
from dynamics_sandbox.conftest import SALES, make_msal_app, make_session, sign_in
from dynamics_sandbox.faults import Faults
from dynamics_sandbox.testing import start_sandbox
from dynamics_sandbox.tests.test_batch import API_PATH, lead, request_part, send_batch
from dynamics_sandbox.tests.test_limits import api_for


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


def leads_with(running, email):
    return [row for row in running.store.records("lead") if row["emailaddress1"] == email]


def statuses_of(running, count):
    api = api_for(running)
    return [api.get("WhoAmI").status_code for _ in range(count)]


def test_transient_error_status(start):
    running = start(fault_error_rate=1)
    response = api_for(running).get("WhoAmI")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "0x80040216"


def test_transient_error_writes_nothing(start, email):
    running = start(fault_error_rate=1)
    response = api_for(running).post("leads", json=lead(email))
    assert response.status_code == 503
    assert leads_with(running, email) == []


def test_transient_error_batch(start, email):
    running = start(fault_error_rate=1)
    response = send_batch(api_for(running), [request_part("POST", API_PATH + "leads", lead(email))])
    assert response.status_code == 503
    assert leads_with(running, email) == []


def test_error_rate_reproducible(start):
    first = statuses_of(start(fault_error_rate=0.5, fault_seed=11), 30)
    second = statuses_of(start(fault_error_rate=0.5, fault_seed=11), 30)
    assert first == second
    assert 200 in first
    assert 503 in first


def test_error_rate_seed_matters(start):
    first = statuses_of(start(fault_error_rate=0.5, fault_seed=1), 30)
    second = statuses_of(start(fault_error_rate=0.5, fault_seed=2), 30)
    assert first != second


def test_dropped_response_commits(start, email):
    running = start(fault_drop_rate=1)
    with pytest.raises(requests.ConnectionError):
        api_for(running).post("leads", json=lead(email))
    assert len(leads_with(running, email)) == 1


def test_dropped_response_logged(start, email):
    running = start(fault_drop_rate=1)
    with pytest.raises(requests.ConnectionError):
        api_for(running).post("leads", json=lead(email))
    assert running.store.requests(path_prefix=API_PATH + "leads")[-1]["status"] == 204


def test_throttle_next(start):
    running = start()
    running.faults.throttle_next(2, retry_after=3)
    api = api_for(running)
    throttled = [api.get("WhoAmI") for _ in range(2)]
    after = api.get("WhoAmI")
    assert [response.status_code for response in throttled] == [429, 429]
    assert throttled[0].headers["Retry-After"] == "3"
    assert throttled[0].json()["error"]["code"] == "0x80072322"
    assert after.status_code == 200


def test_throttle_burst_at_start(start):
    running = start(fault_throttle_burst=1)
    assert statuses_of(running, 2) == [429, 200]


def test_faults_update_runtime(start):
    running = start()
    running.faults.update(error_rate=1)
    failed = statuses_of(running, 1)
    running.faults.reset()
    assert failed == [503]
    assert statuses_of(running, 1) == [200]


def test_sign_in_unaffected(start):
    running = start(fault_error_rate=1, fault_drop_rate=1, fault_throttle_burst=5)
    app = make_msal_app(running, make_session(running.ca_bundle))
    result = sign_in(running, app, SALES)
    assert "access_token" in result


def test_early_token_expiry(start):
    running = start(fault_access_token_lifetime=0)
    app = make_msal_app(running, make_session(running.ca_bundle))
    result = sign_in(running, app, SALES)
    response = api_for(running).get("WhoAmI")
    api = api_for(running)
    api.session.headers["Authorization"] = f"Bearer {result['access_token']}"
    rejected = api.get("WhoAmI")
    assert result["expires_in"] > 3000
    assert response.status_code == 200
    assert rejected.status_code == 401


def test_revoked_refresh_tokens(start):
    running = start()
    app = make_msal_app(running, make_session(running.ca_bundle))
    result = sign_in(running, app, SALES)
    running.store.revoke_refresh_tokens(seed.SAM_ID)
    renewed = app.acquire_token_by_refresh_token(
        result["refresh_token"], scopes=[running.base_url + "/.default"]
    )
    assert renewed.get("error") == "invalid_grant"


def test_revoke_other_user_kept(start):
    running = start()
    app = make_msal_app(running, make_session(running.ca_bundle))
    result = sign_in(running, app, SALES)
    running.store.revoke_refresh_tokens(seed.ALEX_ID)
    renewed = app.acquire_token_by_refresh_token(
        result["refresh_token"], scopes=[running.base_url + "/.default"]
    )
    assert "access_token" in renewed


@pytest.mark.parametrize("changes", [
    {"error_rate": 1.5},
    {"drop_rate": -0.1},
    {"throttle_burst": -1},
    {"access_token_lifetime": "soon"},
    {"seed": 1.5},
    {"latency": 10},
])
def test_faults_invalid_settings(changes):
    with pytest.raises(ValueError):
        Faults(**changes)


def test_faults_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SANDBOX_FAULT_ERROR_RATE", "0.25")
    monkeypatch.setenv("SANDBOX_FAULT_THROTTLE_BURST", "2")
    monkeypatch.setenv("SANDBOX_FAULT_SEED", "9")
    running = start_sandbox(tmp_path)
    try:
        settings = running.faults.as_dict()
    finally:
        running.stop()
    assert settings["error_rate"] == 0.25
    assert settings["throttle_burst"] == 2
    assert settings["seed"] == 9


def test_faults_environment_invalid(tmp_path, monkeypatch):
    monkeypatch.setenv("SANDBOX_FAULT_DROP_RATE", "2")
    with pytest.raises(ValueError, match="SANDBOX_FAULT_DROP_RATE"):
        start_sandbox(tmp_path)
