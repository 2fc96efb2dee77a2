"""Client credentials over HTTPS: app-only tokens, application users and Entra's errors."""

import base64

import msal
import pytest

from dynamics_sandbox import seed
from dynamics_sandbox.conftest import (
    REDIRECT_URI, environment_api, make_msal_app, make_session, token_endpoint,
)

ENVIRONMENTS = (seed.CONTOSO_SALES, seed.CONTOSO_EVENTS)


def request_app_token(sandbox, tenant="sandbox-tenant", client_id=seed.APP_USER_CLIENT_ID,
                      client_secret=seed.APP_USER_CLIENT_SECRET, scope=None, **extra):
    form = {"grant_type": "client_credentials", "client_id": client_id,
            "client_secret": client_secret, **extra}
    form["scope"] = sandbox.base_url + "/.default" if scope is None else scope
    return make_session(sandbox.ca_bundle).post(token_endpoint(sandbox, tenant), data=form)


def app_token(sandbox, unique_name, client_id=seed.APP_USER_CLIENT_ID,
              client_secret=seed.APP_USER_CLIENT_SECRET):
    scope = sandbox.environment(unique_name).url + "/.default"
    response = request_app_token(sandbox, client_id=client_id, client_secret=client_secret,
                                 scope=scope)
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def assert_entra_error(response, status, error, code):
    body = response.json()
    assert response.status_code == status, body
    assert body["error"] == error
    assert body["error_codes"] == [code]
    assert body["error_description"].startswith(f"AADSTS{code}: ")


def test_msal_acquire_token_for_client(sandbox):
    app = msal.ConfidentialClientApplication(
        seed.APP_USER_CLIENT_ID, client_credential=seed.APP_USER_CLIENT_SECRET,
        authority=sandbox.authority, instance_discovery=False,
        http_client=make_session(sandbox.ca_bundle),
    )
    scopes = [sandbox.environment(seed.CONTOSO_EVENTS).url + "/.default"]
    first = app.acquire_token_for_client(scopes=scopes)
    second = app.acquire_token_for_client(scopes=scopes)
    assert first["token_type"] == "Bearer", first
    assert first["token_source"] == "identity_provider"
    assert second["token_source"] == "cache"
    assert second["access_token"] == first["access_token"]
    whoami = environment_api(sandbox, seed.CONTOSO_EVENTS, first["access_token"]).get("WhoAmI")
    assert whoami.json()["UserId"] == seed.APP_USER_ID


def test_token_response_shape(sandbox):
    response = request_app_token(sandbox)
    body = response.json()
    assert response.status_code == 200
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] > 0
    assert body["access_token"]
    assert "refresh_token" not in body
    assert "id_token" not in body
    assert response.headers["Cache-Control"] == "no-store"


def test_tenant_guid_endpoint(sandbox):
    response = request_app_token(sandbox, tenant=seed.TENANT_ID)
    assert response.status_code == 200, response.text


def test_basic_authentication(sandbox):
    credentials = f"{seed.APP_USER_CLIENT_ID}:{seed.APP_USER_CLIENT_SECRET}".encode()
    response = make_session(sandbox.ca_bundle).post(
        token_endpoint(sandbox),
        data={"grant_type": "client_credentials", "scope": sandbox.base_url + "/.default"},
        headers={"Authorization": "Basic " + base64.b64encode(credentials).decode()},
    )
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("unique_name", ENVIRONMENTS)
def test_application_user_whoami(sandbox, unique_name):
    api = environment_api(sandbox, unique_name, app_token(sandbox, unique_name))
    body = api.get("WhoAmI").json()
    organization_id = seed.ENVIRONMENTS_BY_UNIQUE_NAME[unique_name].organization_id
    assert body["UserId"] == seed.APP_USER_ID
    assert body["OrganizationId"] == organization_id


@pytest.mark.parametrize("unique_name", ENVIRONMENTS)
def test_application_user_record(sandbox, unique_name):
    api = environment_api(sandbox, unique_name, app_token(sandbox, unique_name))
    response = api.get(
        f"systemusers({seed.APP_USER_ID})?$select=fullname,internalemailaddress,"
        "applicationid,accessmode,azureactivedirectoryobjectid"
        "&$expand=systemuserroles_association($select=roleid,name)"
    )
    body = response.json()
    assert response.status_code == 200, body
    assert body["fullname"] == "Lead Sync Application"
    assert body["internalemailaddress"] is None
    assert body["applicationid"] == seed.APP_USER_CLIENT_ID
    assert body["accessmode"] == 4
    assert body["azureactivedirectoryobjectid"] == seed.APP_USER_OBJECT_ID
    assert [role["name"] for role in body["systemuserroles_association"]] == ["Salesperson"]


def test_application_user_privileges(sandbox):
    api = environment_api(sandbox, seed.CONTOSO_SALES, app_token(sandbox, seed.CONTOSO_SALES))
    response = api.get(
        f"systemusers({seed.APP_USER_ID})/Microsoft.Dynamics.CRM.RetrieveUserPrivileges()"
    )
    names = {privilege["PrivilegeName"] for privilege in response.json()["RolePrivileges"]}
    assert response.status_code == 200
    assert "prvCreateLead" in names
    assert "prvDeleteLead" not in names


def test_application_user_creates_lead(sandbox, email):
    api = environment_api(sandbox, seed.CONTOSO_EVENTS, app_token(sandbox, seed.CONTOSO_EVENTS))
    lead = api.create("leads", {"lastname": "App", "emailaddress1": email})
    assert lead["_ownerid_value"] == seed.APP_USER_ID
    assert lead["_createdby_value"] == seed.APP_USER_ID


def test_application_user_missing_privilege(sandbox, email):
    api = environment_api(sandbox, seed.CONTOSO_SALES, app_token(sandbox, seed.CONTOSO_SALES))
    lead = api.create("leads", {"lastname": "App", "emailaddress1": email})
    response = api.delete(f"leads({lead['leadid']})")
    message = response.json()["error"]["message"]
    assert response.status_code == 403
    assert f"Principal user (Id={seed.APP_USER_ID}, type=8," in message
    assert "accessMode=4," in message


def test_application_user_not_on_sign_in_page(sandbox):
    app = make_msal_app(sandbox, make_session(sandbox.ca_bundle))
    flow = app.initiate_auth_code_flow(
        scopes=[sandbox.base_url + "/.default"], redirect_uri=REDIRECT_URI
    )
    page = make_session(sandbox.ca_bundle).get(flow["auth_uri"]).text
    assert "Lead Sync Application" not in page
    assert "Sam Sales" in page


def test_app_token_rejected_by_other_environment(sandbox):
    api = environment_api(sandbox, seed.CONTOSO_EVENTS, app_token(sandbox, seed.CONTOSO_SALES))
    assert api.get("WhoAmI").status_code == 401


@pytest.mark.parametrize("unique_name", ENVIRONMENTS)
def test_unlicensed_app_rejected(sandbox, unique_name):
    token = app_token(sandbox, unique_name, seed.UNLICENSED_APP_CLIENT_ID,
                      seed.UNLICENSED_APP_CLIENT_SECRET)
    response = environment_api(sandbox, unique_name, token).get("WhoAmI")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "0x80072560"


def test_product_client_has_no_application_user(sandbox):
    token = app_token(sandbox, seed.CONTOSO_SALES, sandbox.client_id, sandbox.client_secret)
    response = environment_api(sandbox, seed.CONTOSO_SALES, token).get("WhoAmI")
    assert response.status_code == 403


@pytest.mark.parametrize("tenant", ["organizations", "common"])
def test_multi_tenant_alias_rejected(sandbox, tenant):
    response = request_app_token(sandbox, tenant=tenant)
    assert_entra_error(response, 400, "invalid_request", 50059)


def test_unknown_tenant(sandbox):
    response = request_app_token(sandbox, tenant="fabrikam.example")
    assert_entra_error(response, 400, "invalid_tenant", 90002)


def test_wrong_secret(sandbox):
    response = request_app_token(sandbox, client_secret="wrong")
    assert_entra_error(response, 401, "invalid_client", 7000215)


def test_missing_secret(sandbox):
    response = request_app_token(sandbox, client_secret="")
    assert_entra_error(response, 401, "invalid_client", 7000218)


def test_expired_secret(sandbox):
    response = request_app_token(sandbox, client_id=seed.EXPIRED_APP_CLIENT_ID,
                                 client_secret=seed.EXPIRED_APP_CLIENT_SECRET)
    assert_entra_error(response, 401, "invalid_client", 7000222)


def test_expired_app_wrong_secret(sandbox):
    response = request_app_token(sandbox, client_id=seed.EXPIRED_APP_CLIENT_ID,
                                 client_secret="wrong")
    assert_entra_error(response, 401, "invalid_client", 7000215)


def test_unknown_client(sandbox):
    response = request_app_token(sandbox, client_id="11111111-1111-4111-8111-111111111111")
    assert_entra_error(response, 400, "unauthorized_client", 700016)


def test_missing_scope(sandbox):
    response = request_app_token(sandbox, scope="")
    assert_entra_error(response, 400, "invalid_request", 900144)


@pytest.mark.parametrize("scope_suffix", [
    "/user_impersonation",
    "/.default openid",
    "/.default offline_access",
])
def test_scope_not_one_default(sandbox, scope_suffix):
    response = request_app_token(sandbox, scope=sandbox.base_url + scope_suffix)
    assert_entra_error(response, 400, "invalid_scope", 1002012)


def test_two_default_scopes(sandbox):
    events_url = sandbox.environment(seed.CONTOSO_EVENTS).url
    response = request_app_token(
        sandbox, scope=f"{sandbox.base_url}/.default {events_url}/.default"
    )
    assert_entra_error(response, 400, "invalid_scope", 1002012)


def test_expired_app_token(sandbox):
    token = app_token(sandbox, seed.CONTOSO_SALES)
    api = environment_api(sandbox, seed.CONTOSO_SALES, token)
    assert api.get("WhoAmI").status_code == 200
    sandbox.store.expire_access_tokens(user_id="")
    assert api.get("WhoAmI").status_code == 401


def test_openid_configuration_lists_grant(sandbox):
    response = make_session(sandbox.ca_bundle).get(
        f"{sandbox.authority}/v2.0/.well-known/openid-configuration"
    )
    assert "client_credentials" in response.json()["grant_types_supported"]


def test_app_registration_cannot_sign_in_users(sandbox):
    app = make_msal_app(sandbox, make_session(sandbox.ca_bundle))
    flow = app.initiate_auth_code_flow(
        scopes=[sandbox.base_url + "/.default"], redirect_uri=REDIRECT_URI
    )
    url = flow["auth_uri"].replace(sandbox.client_id, seed.APP_USER_CLIENT_ID)
    page = make_session(sandbox.ca_bundle).get(url, allow_redirects=False)
    assert page.status_code == 400
    assert "AADSTS500113" in page.text
