"""Two environments over HTTPS: separate records, per-environment tokens and refresh."""

import json
import signal
import socket
import uuid

import pytest
import requests
from django.core.management import call_command

from dynamics_sandbox import seed
from dynamics_sandbox.conftest import (
    ADMIN, READER, SALES, Api, environment_api, make_msal_app, make_session, sign_in_for,
    token_endpoint,
)
from dynamics_sandbox.testing import start_sandbox, start_sandbox_process
from dynamics_sandbox.tests.test_batch import batch_body, request_part

SALES_ENV = seed.CONTOSO_SALES
EVENTS_ENV = seed.CONTOSO_EVENTS


@pytest.fixture(scope="module")
def env_tokens(sandbox):
    """Access tokens by (email, unique name), from one MSAL sign-in per user and env."""
    session = make_session(sandbox.ca_bundle)
    result = {}
    for email in (ADMIN, SALES, READER):
        for unique_name in (SALES_ENV, EVENTS_ENV):
            app = make_msal_app(sandbox, session)
            url = sandbox.environment(unique_name).url
            result[email, unique_name] = sign_in_for(sandbox, app, email, url)["access_token"]
    return result


def create_lead(api, email):
    return api.create("leads", {"lastname": "Env", "emailaddress1": email})


def leads_with_email(api, email):
    response = api.get(f"leads?$select=leadid&$filter=emailaddress1 eq '{email}'")
    assert response.status_code == 200, response.text
    return response.json()["value"]


def test_environments_listed(sandbox):
    sales = sandbox.environment(SALES_ENV)
    events = sandbox.environment(EVENTS_ENV)
    assert [env.unique_name for env in sandbox.environments] == [SALES_ENV, EVENTS_ENV]
    assert sales.url == sandbox.base_url
    assert sales.store is sandbox.store
    assert sales.name == "Contoso Sales"
    assert events.name == "Contoso Events"
    assert events.url.startswith("https://127.0.0.1:")
    assert not events.url.endswith("/")
    assert events.url != sales.url
    assert events.environment_id == seed.ENVIRONMENTS_BY_UNIQUE_NAME[EVENTS_ENV].environment_id
    assert sales.environment_id != events.environment_id
    assert events.store is not sandbox.store


def test_environment_unknown_name(sandbox):
    with pytest.raises(KeyError, match="contosoevents"):
        sandbox.environment("fabrikam")


def test_discovery_url(sandbox):
    assert sandbox.discovery_url == sandbox.base_url + "/globaldisco"


def test_lead_stays_in_its_environment(sandbox, env_tokens, email):
    sales_api = environment_api(sandbox, SALES_ENV, env_tokens[SALES, SALES_ENV])
    events_api = environment_api(sandbox, EVENTS_ENV, env_tokens[SALES, EVENTS_ENV])
    created = create_lead(sales_api, email)
    assert [row["leadid"] for row in leads_with_email(sales_api, email)] == [created["leadid"]]
    assert leads_with_email(events_api, email) == []
    missing = events_api.get(f"leads({created['leadid']})")
    assert missing.status_code == 404


def test_events_lead_not_in_sales(sandbox, env_tokens, email):
    sales_api = environment_api(sandbox, SALES_ENV, env_tokens[ADMIN, SALES_ENV])
    events_api = environment_api(sandbox, EVENTS_ENV, env_tokens[ADMIN, EVENTS_ENV])
    created = create_lead(events_api, email)
    assert leads_with_email(sales_api, email) == []
    events_store = sandbox.environment(EVENTS_ENV).store
    assert events_store.get("lead", created["leadid"])["emailaddress1"] == email
    assert sandbox.store.get("lead", created["leadid"]) is None


def test_whoami_per_environment(sandbox, env_tokens):
    for unique_name in (SALES_ENV, EVENTS_ENV):
        api = environment_api(sandbox, unique_name, env_tokens[SALES, unique_name])
        body = api.get("WhoAmI").json()
        assert body["UserId"] == seed.SAM_ID
        assert body["OrganizationId"] == seed.ENVIRONMENTS_BY_UNIQUE_NAME[unique_name].organization_id
        assert body["BusinessUnitId"] == seed.BUSINESS_UNIT_ID


@pytest.mark.parametrize("token_env, target_env", [
    (SALES_ENV, EVENTS_ENV), (EVENTS_ENV, SALES_ENV),
])
def test_token_rejected_by_other_environment(sandbox, env_tokens, token_env, target_env):
    api = environment_api(sandbox, target_env, env_tokens[SALES, token_env])
    response = api.get("WhoAmI")
    challenge = response.headers["WWW-Authenticate"]
    assert response.status_code == 401
    assert challenge.startswith(
        f"Bearer authorization_uri={sandbox.authority}/oauth2/authorize, "
    )
    assert challenge.endswith(f"resource_id={sandbox.environment(target_env).url}")


def test_user_missing_from_environment(sandbox, env_tokens):
    api = environment_api(sandbox, EVENTS_ENV, env_tokens[READER, EVENTS_ENV])
    response = api.get("WhoAmI")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "0x80072560"
    assert response.json()["error"]["message"] == "The user is not a member of the organization."


def test_reader_works_in_sales(sandbox, env_tokens):
    api = environment_api(sandbox, SALES_ENV, env_tokens[READER, SALES_ENV])
    assert api.get("WhoAmI").json()["UserId"] == seed.RILEY_ID


def test_seeded_users_per_environment(sandbox):
    events_users = sandbox.environment(EVENTS_ENV).store.records("systemuser")
    sales_users = sandbox.store.records("systemuser")
    events_ids = {user["azureactivedirectoryobjectid"] for user in events_users}
    sales_ids = {user["azureactivedirectoryobjectid"] for user in sales_users}
    assert sales_ids - events_ids == {"00000000-0000-4000-8000-00000000b003"}
    assert seed.APP_USER_OBJECT_ID in events_ids
    assert len(sandbox.environment(EVENTS_ENV).store.records("role")) == len(seed.ROLES)
    assert len(sandbox.environment(EVENTS_ENV).store.records("team")) == len(seed.TEAMS)


def test_msal_one_sign_in_many_resources(sandbox):
    """One interactive sign-in, then silent tokens for discovery and each environment."""
    app = make_msal_app(sandbox, make_session(sandbox.ca_bundle))
    first = sign_in_for(sandbox, app, ADMIN, sandbox.discovery_url)
    account = app.get_accounts()[0]
    events_url = sandbox.environment(EVENTS_ENV).url
    events = app.acquire_token_silent([events_url + "/.default"], account=account)
    sales = app.acquire_token_silent([sandbox.base_url + "/.default"], account=account)

    assert "access_token" in first, first
    assert events["token_source"] == "identity_provider"
    assert events["access_token"] != first["access_token"]
    whoami = environment_api(sandbox, EVENTS_ENV, events["access_token"]).get("WhoAmI")
    assert whoami.status_code == 200
    assert whoami.json()["UserId"] == seed.ALEX_ID
    assert environment_api(sandbox, SALES_ENV, sales["access_token"]).get("WhoAmI").status_code == 200
    assert environment_api(sandbox, SALES_ENV, events["access_token"]).get("WhoAmI").status_code == 401


def test_refresh_token_for_other_resource(sandbox):
    app = make_msal_app(sandbox, make_session(sandbox.ca_bundle))
    first = sign_in_for(sandbox, app, SALES, sandbox.base_url)
    events_url = sandbox.environment(EVENTS_ENV).url
    response = make_session(sandbox.ca_bundle).post(token_endpoint(sandbox), data={
        "client_id": sandbox.client_id, "client_secret": sandbox.client_secret,
        "grant_type": "refresh_token", "refresh_token": first["refresh_token"],
        "scope": f"{events_url}/.default offline_access openid",
    })
    body = response.json()
    assert response.status_code == 200, body
    assert f"{events_url}/.default" in body["scope"].split()
    assert body["refresh_token"] != first["refresh_token"]
    grant = sandbox.store.get_grant("access", body["access_token"])
    assert grant["audience"] == events_url
    assert environment_api(sandbox, EVENTS_ENV, body["access_token"]).get("WhoAmI").status_code == 200


def test_faults_reach_events(sandbox, env_tokens):
    api = environment_api(sandbox, EVENTS_ENV, env_tokens[SALES, EVENTS_ENV])
    sandbox.faults.throttle_next(1, retry_after=2)
    try:
        throttled = api.get("WhoAmI")
    finally:
        sandbox.faults.reset()
    assert throttled.status_code == 429
    assert throttled.headers["Retry-After"] == "2"
    assert api.get("WhoAmI").status_code == 200


def test_events_batch_accepts_own_urls(sandbox, env_tokens):
    api = environment_api(sandbox, EVENTS_ENV, env_tokens[SALES, EVENTS_ENV])
    events_url = sandbox.environment(EVENTS_ENV).url
    own = batch_body([request_part("GET", f"{events_url}/api/data/v9.2/leads?$select=leadid")])
    other = batch_body([request_part("GET", f"{sandbox.base_url}/api/data/v9.2/leads")])
    headers = {"Content-Type": "multipart/mixed; boundary=batch_1"}

    accepted = api.post("$batch", data=own.encode(), headers=headers)
    rejected = api.post("$batch", data=other.encode(), headers=headers)
    assert accepted.status_code == 200, accepted.text
    assert "HTTP/1.1 200" in accepted.text
    assert rejected.status_code == 400
    assert "does not address this service" in rejected.text


def test_events_request_log(sandbox, env_tokens):
    events_store = sandbox.environment(EVENTS_ENV).store
    before = events_store.request_counts()["http_requests"]
    environment_api(sandbox, EVENTS_ENV, env_tokens[ADMIN, EVENTS_ENV]).get("WhoAmI")
    assert events_store.request_counts()["http_requests"] == before + 1


def test_events_has_no_sign_in(sandbox):
    url = f"{sandbox.environment(EVENTS_ENV).url}/sandbox-tenant/v2.0/.well-known/openid-configuration"
    response = make_session(sandbox.ca_bundle).get(url)
    assert response.status_code == 404


def free_port_pair():
    """Return a port P such that P and P + 1 were both free a moment ago."""
    for _ in range(50):
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port = first.getsockname()[1]
            with socket.socket() as second:
                try:
                    second.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
                return port
    raise RuntimeError("No two adjacent free ports found on 127.0.0.1.")


def test_fixed_port_next_port(tmp_path):
    port = free_port_pair()
    running = start_sandbox(tmp_path, port=port)
    try:
        events_url = running.environment(EVENTS_ENV).url
    finally:
        running.stop()
    assert running.base_url == f"https://127.0.0.1:{port}"
    assert events_url == f"https://127.0.0.1:{port + 1}"


def test_events_port_taken(tmp_path):
    port = free_port_pair()
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", port + 1))
        blocker.listen()
        with pytest.raises(OSError):
            start_sandbox(tmp_path, port=port)
    # The main port was released, so a second start on it works.
    running = start_sandbox(tmp_path, port=port)
    running.stop()


def test_events_store_in_own_folder(tmp_path):
    running = start_sandbox(tmp_path)
    running.stop()
    assert (tmp_path / "records.sqlite3").exists()
    assert (tmp_path / "environments" / EVENTS_ENV / "records.sqlite3").exists()


def test_records_command_environment(tmp_path, capsys):
    running = start_sandbox(tmp_path)
    try:
        token = running.store.add_grant(
            "access", seed.SAM_ID, running.client_id, 3600,
            {"audience": running.environment(EVENTS_ENV).url, "scope": "",
             "oid": "00000000-0000-4000-8000-00000000b002"},
        )
        api = Api(running, token)
        api.root = running.environment(EVENTS_ENV).url + "/api/data/v9.2/"
        api.create("leads", {"lastname": "Events", "emailaddress1": "events@example.org"})
    finally:
        running.stop()

    call_command("sandbox_records", "leads", "--json", "--data-dir", str(tmp_path),
                 "--environment", EVENTS_ENV)
    events = json.loads(capsys.readouterr().out)
    call_command("sandbox_records", "leads", "--json", "--data-dir", str(tmp_path))
    sales = json.loads(capsys.readouterr().out)
    call_command("sandbox_records", "systemusers", "--json", "--data-dir", str(tmp_path),
                 "--environment", EVENTS_ENV)
    users = json.loads(capsys.readouterr().out)
    assert [lead["emailaddress1"] for lead in events] == ["events@example.org"]
    assert sales == []
    assert seed.RILEY_ID not in {user["systemuserid"] for user in users}


@pytest.mark.e2e
def test_process_prints_environment_lines(tmp_path):
    process, base_url = start_sandbox_process(tmp_path)
    try:
        line = process.stdout.readline()
        events_url = line.rsplit(" ", 1)[-1].strip()
        session = requests.Session()
        session.trust_env = False
        response = session.get(
            f"{events_url}/api/data/v9.2/WhoAmI", verify=str(tmp_path / "cert.pem"), timeout=10,
        )
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)
    assert line.startswith(f"Dynamics sandbox environment {EVENTS_ENV} (Contoso Events) "
                           "listening on https://127.0.0.1:")
    assert events_url != base_url
    assert response.status_code == 401
    assert process.returncode == 0


def test_lead_ids_may_repeat_across_environments(sandbox, env_tokens, email):
    lead_id = str(uuid.uuid4())
    for unique_name in (SALES_ENV, EVENTS_ENV):
        api = environment_api(sandbox, unique_name, env_tokens[SALES, unique_name])
        created = api.create("leads", {"leadid": lead_id, "lastname": unique_name,
                                       "emailaddress1": email})
        assert created["lastname"] == unique_name
