"""Global Discovery Service over HTTPS: instances per user, filters and token audiences."""

import pytest

from dynamics_sandbox import seed
from dynamics_sandbox.conftest import (
    ADMIN, READER, SALES, environment_api, make_msal_app, make_session, sign_in_for,
    token_endpoint,
)
from dynamics_sandbox.oauth import TokenError, resource_of_scopes
from dynamics_sandbox.testing import start_sandbox

INSTANCE_FIELDS = {
    "Id", "UniqueName", "UrlName", "FriendlyName", "State", "Version", "Url", "ApiUrl",
    "LastUpdated", "EnvironmentId", "TenantId", "Region", "Purpose", "OrganizationType",
    "TrialExpirationDate", "IsUserSysAdmin", "DatacenterId",
}


@pytest.fixture(scope="module")
def discovery_tokens(sandbox):
    """Discovery access tokens by email, from real MSAL sign-ins."""
    session = make_session(sandbox.ca_bundle)
    result = {}
    for email in (ADMIN, SALES, READER):
        app = make_msal_app(sandbox, session)
        result[email] = sign_in_for(sandbox, app, email, sandbox.discovery_url)["access_token"]
    return result


def discover(sandbox, token, suffix="Instances", params=None):
    session = make_session(sandbox.ca_bundle)
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return session.get(
        f"{sandbox.discovery_url}/api/discovery/v2.0/{suffix}",
        headers=headers, params=params, timeout=10,
    )


def unique_names(response):
    assert response.status_code == 200, response.text
    return [instance["UniqueName"] for instance in response.json()["value"]]


def test_admin_sees_both_environments(sandbox, discovery_tokens):
    response = discover(sandbox, discovery_tokens[ADMIN])
    assert unique_names(response) == [seed.CONTOSO_SALES, seed.CONTOSO_EVENTS]


def test_instance_fields(sandbox, discovery_tokens):
    instances = discover(sandbox, discovery_tokens[ADMIN]).json()["value"]
    events = sandbox.environment(seed.CONTOSO_EVENTS)
    instance = instances[1]
    assert set(instance) == INSTANCE_FIELDS
    assert instance["Id"] == events.organization_id
    assert instance["EnvironmentId"] == events.environment_id
    assert instance["FriendlyName"] == "Contoso Events"
    assert instance["UrlName"] == "contosoevents"
    assert instance["Url"] == events.url
    assert instance["ApiUrl"] == events.url
    assert instance["State"] == 0
    assert instance["TenantId"] == seed.TENANT_ID
    assert instance["TrialExpirationDate"] is None
    assert instances[0]["Url"] == sandbox.base_url


def test_reader_sees_one_environment(sandbox, discovery_tokens):
    response = discover(sandbox, discovery_tokens[READER])
    assert unique_names(response) == [seed.CONTOSO_SALES]


def test_is_user_sys_admin(sandbox, discovery_tokens):
    admin = discover(sandbox, discovery_tokens[ADMIN]).json()["value"]
    sales = discover(sandbox, discovery_tokens[SALES]).json()["value"]
    assert [instance["IsUserSysAdmin"] for instance in admin] == [True, True]
    assert [instance["IsUserSysAdmin"] for instance in sales] == [False, False]


def test_filter_unique_name(sandbox, discovery_tokens):
    response = discover(sandbox, discovery_tokens[SALES],
                        params={"$filter": "UniqueName eq 'contosoevents'"})
    assert unique_names(response) == [seed.CONTOSO_EVENTS]


def test_filter_environment_id(sandbox, discovery_tokens):
    environment_id = sandbox.environment(seed.CONTOSO_SALES).environment_id
    response = discover(sandbox, discovery_tokens[SALES],
                        params={"$filter": f"EnvironmentId eq '{environment_id}'"})
    assert unique_names(response) == [seed.CONTOSO_SALES]


def test_filter_environment_id_unquoted(sandbox, discovery_tokens):
    environment_id = sandbox.environment(seed.CONTOSO_SALES).environment_id
    response = discover(sandbox, discovery_tokens[SALES],
                        params={"$filter": f"EnvironmentId eq {environment_id}"})
    assert response.status_code == 400


def test_filter_id_and_state(sandbox, discovery_tokens):
    organization_id = sandbox.environment(seed.CONTOSO_EVENTS).organization_id
    response = discover(sandbox, discovery_tokens[ADMIN],
                        params={"$filter": f"Id eq {organization_id} and State eq 0"})
    assert unique_names(response) == [seed.CONTOSO_EVENTS]


def test_filter_matches_nothing(sandbox, discovery_tokens):
    response = discover(sandbox, discovery_tokens[READER],
                        params={"$filter": "UniqueName eq 'contosoevents'"})
    assert unique_names(response) == []


def test_filter_invalid(sandbox, discovery_tokens):
    response = discover(sandbox, discovery_tokens[SALES], params={"$filter": "Nope eq 1"})
    assert response.status_code == 400
    assert "Nope" in response.json()["error"]["message"]


def test_select(sandbox, discovery_tokens):
    response = discover(sandbox, discovery_tokens[SALES],
                        params={"$select": "UniqueName,ApiUrl"})
    first = response.json()["value"][0]
    assert response.status_code == 200
    assert first == {"UniqueName": seed.CONTOSO_SALES, "ApiUrl": sandbox.base_url}


def test_unsupported_option(sandbox, discovery_tokens):
    response = discover(sandbox, discovery_tokens[SALES], params={"$orderby": "UniqueName"})
    assert response.status_code == 400


def test_instance_by_unique_name(sandbox, discovery_tokens):
    response = discover(sandbox, discovery_tokens[SALES], "Instances(UniqueName='contosoevents')")
    body = response.json()
    assert response.status_code == 200
    assert body["UniqueName"] == seed.CONTOSO_EVENTS
    assert body["Url"] == sandbox.environment(seed.CONTOSO_EVENTS).url
    assert body["@odata.context"].endswith("$metadata#Instances/$entity")


def test_instance_by_id(sandbox, discovery_tokens):
    organization_id = sandbox.environment(seed.CONTOSO_EVENTS).organization_id
    response = discover(sandbox, discovery_tokens[ADMIN], f"Instances({organization_id})")
    assert response.status_code == 200
    assert response.json()["EnvironmentId"] == sandbox.environment(seed.CONTOSO_EVENTS).environment_id


def test_instance_not_for_user(sandbox, discovery_tokens):
    response = discover(sandbox, discovery_tokens[READER], "Instances(UniqueName='contosoevents')")
    assert response.status_code == 404


def test_unknown_path(sandbox, discovery_tokens):
    response = discover(sandbox, discovery_tokens[SALES], "Organizations")
    assert response.status_code == 404


def test_post_not_allowed(sandbox, discovery_tokens):
    response = make_session(sandbox.ca_bundle).post(
        f"{sandbox.discovery_url}/api/discovery/v2.0/Instances",
        headers={"Authorization": f"Bearer {discovery_tokens[SALES]}"}, json={},
    )
    assert response.status_code == 405


def test_missing_token(sandbox):
    response = discover(sandbox, None)
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "Authorization has been denied for this request."
    assert "resource_id=" + sandbox.discovery_url in response.headers["WWW-Authenticate"]


def test_environment_token_rejected(sandbox, tokens):
    response = discover(sandbox, tokens[SALES])
    assert response.status_code == 401


def test_discovery_token_rejected_by_web_api(sandbox, discovery_tokens):
    for unique_name in (seed.CONTOSO_SALES, seed.CONTOSO_EVENTS):
        api = environment_api(sandbox, unique_name, discovery_tokens[ADMIN])
        assert api.get("WhoAmI").status_code == 401, unique_name


def test_token_audience_is_discovery_url(sandbox, discovery_tokens):
    grant = sandbox.store.get_grant("access", discovery_tokens[SALES])
    assert grant["audience"] == f"{sandbox.base_url}/globaldisco"


def test_app_only_token_rejected(sandbox):
    response = make_session(sandbox.ca_bundle).post(token_endpoint(sandbox), data={
        "grant_type": "client_credentials", "client_id": seed.APP_USER_CLIENT_ID,
        "client_secret": seed.APP_USER_CLIENT_SECRET, "scope": sandbox.discovery_url + "/.default",
    })
    assert response.status_code == 200, response.text
    assert discover(sandbox, response.json()["access_token"]).status_code == 401


def test_expired_token_rejected(tmp_path):
    running = start_sandbox(tmp_path)
    try:
        app = make_msal_app(running, make_session(running.ca_bundle))
        token = sign_in_for(running, app, SALES, running.discovery_url)["access_token"]
        before = discover(running, token).status_code
        running.store.expire_access_tokens()
        after = discover(running, token).status_code
    finally:
        running.stop()
    assert before == 200
    assert after == 401


def test_disabled_user_omitted(tmp_path):
    running = start_sandbox(tmp_path)
    try:
        events_store = running.environment(seed.CONTOSO_EVENTS).store
        sam = events_store.get("systemuser", seed.SAM_ID)
        events_store.replace("systemuser", dict(sam, isdisabled=True))
        app = make_msal_app(running, make_session(running.ca_bundle))
        token = sign_in_for(running, app, SALES, running.discovery_url)["access_token"]
        response = discover(running, token)
    finally:
        running.stop()
    assert unique_names(response) == [seed.CONTOSO_SALES]


@pytest.mark.parametrize("scope, resource", [
    ("https://127.0.0.1:8443/.default", "https://127.0.0.1:8443"),
    ("https://127.0.0.1:8443/user_impersonation", "https://127.0.0.1:8443"),
    ("https://127.0.0.1:8443/globaldisco/.default", "https://127.0.0.1:8443/globaldisco"),
    ("https://127.0.0.1:8443/globaldisco/user_impersonation", "https://127.0.0.1:8443/globaldisco"),
])
def test_resource_of_scope(scope, resource):
    assert resource_of_scopes([scope, "openid", "offline_access"]) == resource


def test_resource_of_two_resources():
    with pytest.raises(TokenError) as raised:
        resource_of_scopes(["https://127.0.0.1:8443/.default",
                            "https://127.0.0.1:8443/globaldisco/.default"])
    assert raised.value.code == 28000
