"""Sign-in conformance: discovery, the auth code flow and refresh, through real MSAL."""

import base64
import json
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest

from dynamics_sandbox import seed
from dynamics_sandbox.conftest import (
    ADMIN, REDIRECT_URI, SALES, Api, make_msal_app, make_session, sign_in,
)
from dynamics_sandbox.testing import sign_in_with_form


def query_of(location):
    return dict(parse_qsl(urlsplit(location).query))


def claims_of(jwt):
    payload = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


@pytest.mark.parametrize("tenant", ["sandbox-tenant", seed.TENANT_ID, "organizations", "common"])
def test_discovery_tenants(sandbox, tenant):
    session = make_session(sandbox.ca_bundle)
    response = session.get(f"{sandbox.base_url}/{tenant}/v2.0/.well-known/openid-configuration")
    document = response.json()
    assert response.status_code == 200
    assert document["authorization_endpoint"].startswith("https://")
    assert document["token_endpoint"].startswith("https://")
    assert document["issuer"] == f"{sandbox.base_url}/{seed.TENANT_ID}/v2.0"


def test_discovery_unknown_tenant(sandbox):
    session = make_session(sandbox.ca_bundle)
    response = session.get(f"{sandbox.base_url}/other/v2.0/.well-known/openid-configuration")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_tenant"


def test_msal_sign_in_returns_token(sandbox):
    app = make_msal_app(sandbox, make_session(sandbox.ca_bundle))
    result = sign_in(sandbox, app, SALES)
    assert "access_token" in result, result
    assert result["token_type"] == "Bearer"
    assert result["id_token_claims"]["preferred_username"] == SALES
    assert result["id_token_claims"]["aud"] == sandbox.client_id
    assert result["id_token_claims"]["tid"] == seed.TENANT_ID


def test_msal_silent_hits_cache(sandbox):
    app = make_msal_app(sandbox, make_session(sandbox.ca_bundle))
    first = sign_in(sandbox, app, SALES)
    accounts = app.get_accounts()
    assert len(accounts) == 1
    silent = app.acquire_token_silent([sandbox.base_url + "/.default"], account=accounts[0])
    assert silent["token_source"] == "cache"
    assert silent["access_token"] == first["access_token"]


def test_msal_force_refresh(sandbox):
    app = make_msal_app(sandbox, make_session(sandbox.ca_bundle))
    first = sign_in(sandbox, app, SALES)
    account = app.get_accounts()[0]
    refreshed = app.acquire_token_silent(
        [sandbox.base_url + "/.default"], account=account, force_refresh=True
    )
    assert refreshed["token_source"] == "identity_provider"
    assert refreshed["access_token"] != first["access_token"]
    whoami = Api(sandbox, refreshed["access_token"]).get("WhoAmI")
    assert whoami.json()["UserId"] == seed.SAM_ID


def test_refresh_after_token_expiry(sandbox):
    app = make_msal_app(sandbox, make_session(sandbox.ca_bundle))
    first = sign_in(sandbox, app, ADMIN)
    sandbox.store.expire_access_tokens(seed.ALEX_ID)
    assert Api(sandbox, first["access_token"]).get("WhoAmI").status_code == 401
    # MSAL's cache keeps the old token until its own expiry, so force the refresh.
    renewed = app.acquire_token_silent(
        [sandbox.base_url + "/.default"], account=app.get_accounts()[0], force_refresh=True
    )
    assert Api(sandbox, renewed["access_token"]).get("WhoAmI").status_code == 200


def token_request(sandbox, **form):
    session = make_session(sandbox.ca_bundle)
    return session.post(f"{sandbox.base_url}/{seed.TENANT_ID}/oauth2/v2.0/token", data=form)


def test_refresh_token_rotates(sandbox):
    app = make_msal_app(sandbox, make_session(sandbox.ca_bundle))
    first = sign_in(sandbox, app, SALES)
    scope = f"{sandbox.base_url}/.default offline_access openid"
    form = {
        "client_id": sandbox.client_id, "client_secret": sandbox.client_secret,
        "grant_type": "refresh_token", "refresh_token": first["refresh_token"], "scope": scope,
    }
    renewed = token_request(sandbox, **form)
    reused = token_request(sandbox, **form)
    assert renewed.status_code == 200
    assert renewed.json()["refresh_token"] != first["refresh_token"]
    assert reused.status_code == 400
    assert reused.json()["error"] == "invalid_grant"


def test_expired_refresh_token(sandbox):
    app = make_msal_app(sandbox, make_session(sandbox.ca_bundle))
    first = sign_in(sandbox, app, SALES)
    sandbox.store.expire_refresh_tokens(seed.SAM_ID)
    response = token_request(
        sandbox, client_id=sandbox.client_id, client_secret=sandbox.client_secret,
        grant_type="refresh_token", refresh_token=first["refresh_token"],
        scope=f"{sandbox.base_url}/.default offline_access",
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
    assert response.json()["error_codes"] == [700082]


def test_msal_wrong_secret(sandbox):
    app = make_msal_app(sandbox, make_session(sandbox.ca_bundle), client_secret="wrong")
    result = sign_in(sandbox, app, SALES)
    assert result["error"] == "invalid_client"
    assert result["error_description"].startswith("AADSTS7000215")


def start_flow(sandbox, redirect_uri=REDIRECT_URI):
    app = make_msal_app(sandbox, make_session(sandbox.ca_bundle))
    flow = app.initiate_auth_code_flow(
        scopes=[sandbox.base_url + "/.default"], redirect_uri=redirect_uri
    )
    return app, flow


def test_code_single_use(sandbox):
    app, flow = start_flow(sandbox)
    location = sign_in_with_form(flow["auth_uri"], SALES, sandbox.ca_bundle)
    code = query_of(location)["code"]
    form = {
        "client_id": sandbox.client_id, "client_secret": sandbox.client_secret,
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
        "code_verifier": flow["code_verifier"],
    }
    first = token_request(sandbox, **form)
    second = token_request(sandbox, **form)
    assert first.status_code == 200
    assert second.status_code == 400
    assert second.json()["error"] == "invalid_grant"


def test_code_wrong_verifier(sandbox):
    app, flow = start_flow(sandbox)
    location = sign_in_with_form(flow["auth_uri"], SALES, sandbox.ca_bundle)
    response = token_request(
        sandbox, client_id=sandbox.client_id, client_secret=sandbox.client_secret,
        grant_type="authorization_code", code=query_of(location)["code"],
        redirect_uri=REDIRECT_URI, code_verifier="x" * 43,
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_code_wrong_redirect_uri(sandbox):
    app, flow = start_flow(sandbox)
    location = sign_in_with_form(flow["auth_uri"], SALES, sandbox.ca_bundle)
    response = token_request(
        sandbox, client_id=sandbox.client_id, client_secret=sandbox.client_secret,
        grant_type="authorization_code", code=query_of(location)["code"],
        redirect_uri="http://127.0.0.1:9999/other/", code_verifier=flow["code_verifier"],
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_redirect_carries_state(sandbox):
    app, flow = start_flow(sandbox)
    location = sign_in_with_form(flow["auth_uri"], SALES, sandbox.ca_bundle)
    assert location.startswith(REDIRECT_URI + "?")
    assert query_of(location)["state"] == flow["state"]


@pytest.mark.parametrize("redirect_uri", [
    "https://evil.example/callback",
    "http://127.0.0.1.evil.example/callback",
    "ftp://127.0.0.1/callback",
])
def test_authorize_rejects_redirect_uri(sandbox, redirect_uri):
    app, flow = start_flow(sandbox, redirect_uri=redirect_uri)
    page = make_session(sandbox.ca_bundle).get(flow["auth_uri"], allow_redirects=False)
    assert page.status_code == 400
    assert "AADSTS50011" in page.text


@pytest.mark.parametrize("redirect_uri", [
    "http://localhost:8000/cb", "https://127.0.0.1/cb", "http://[::1]:5000/cb",
])
def test_authorize_accepts_loopback(sandbox, redirect_uri):
    app, flow = start_flow(sandbox, redirect_uri=redirect_uri)
    page = make_session(sandbox.ca_bundle).get(flow["auth_uri"], allow_redirects=False)
    assert page.status_code == 200
    assert "Sign in to the Dynamics sandbox" in page.text


def test_authorize_unknown_client(sandbox):
    app, flow = start_flow(sandbox)
    url = flow["auth_uri"].replace(sandbox.client_id, "11111111-1111-4111-8111-111111111111")
    page = make_session(sandbox.ca_bundle).get(url, allow_redirects=False)
    assert page.status_code == 400
    assert "AADSTS700016" in page.text


def test_authorize_requires_pkce(sandbox):
    app, flow = start_flow(sandbox)
    parts = urlsplit(flow["auth_uri"])
    query = {key: value for key, value in parse_qsl(parts.query) if key != "code_challenge"}
    url = parts._replace(query=urlencode(query)).geturl()
    page = make_session(sandbox.ca_bundle).get(url, allow_redirects=False)
    error = query_of(page.headers["Location"])
    assert page.status_code == 302
    assert error["error"] == "invalid_request"
    assert error["state"] == flow["state"]


def test_authorize_form_rechecks_fields(sandbox):
    app, flow = start_flow(sandbox)
    parts = urlsplit(flow["auth_uri"])
    form = dict(parse_qsl(parts.query))
    form["redirect_uri"] = "https://evil.example/callback"
    form["login_hint"] = SALES
    response = make_session(sandbox.ca_bundle).post(
        f"{sandbox.base_url}{parts.path}", data=form, allow_redirects=False
    )
    assert response.status_code == 400
    assert "AADSTS50011" in response.text


def test_id_token_nonce_matches_request(sandbox):
    app, flow = start_flow(sandbox)
    location = sign_in_with_form(flow["auth_uri"], SALES, sandbox.ca_bundle)
    response = token_request(
        sandbox, client_id=sandbox.client_id, client_secret=sandbox.client_secret,
        grant_type="authorization_code", code=query_of(location)["code"],
        redirect_uri=REDIRECT_URI, code_verifier=flow["code_verifier"],
        scope=f"{sandbox.base_url}/.default openid profile offline_access",
    )
    claims = claims_of(response.json()["id_token"])
    assert claims["nonce"] == query_of(flow["auth_uri"])["nonce"]


def test_token_response_client_info(sandbox):
    app = make_msal_app(sandbox, make_session(sandbox.ca_bundle))
    sign_in(sandbox, app, SALES)
    account = app.get_accounts()[0]
    assert account["home_account_id"] == f"00000000-0000-4000-8000-00000000b002.{seed.TENANT_ID}"
