"""Environment URLs outside Dynamics are rejected before any request, and the sign-in
and connection forms keep their OAuth and CSRF checks."""

from urllib.parse import urlsplit

import pytest
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse

from dynamics_sandbox import seed
from dynamics_sandbox.testing import sign_in_with_form
from integrations import connecting, connection, environments
from integrations.client import errors
from integrations.models import Integration
from integrations.views import SIGN_IN_SESSION_KEY
from teams.tests.factories import make_admin, make_team

from .conftest import SANDBOX_ADMIN

pytestmark = pytest.mark.django_db

ACCEPTED = [
    ("https://contoso.crm.dynamics.com", "https://contoso.crm.dynamics.com"),
    ("https://contoso.crm.dynamics.com/", "https://contoso.crm.dynamics.com"),
    ("https://Contoso.CRM4.Dynamics.com", "https://contoso.crm4.dynamics.com"),
    ("https://contoso.crm.dynamics.com:443", "https://contoso.crm.dynamics.com"),
    ("  https://contoso.crm9.dynamics.com  ", "https://contoso.crm9.dynamics.com"),
    ("https://agency.crm.microsoftdynamics.us", "https://agency.crm.microsoftdynamics.us"),
    ("https://contoso.crm.dynamics.cn", "https://contoso.crm.dynamics.cn"),
    ("https://contoso-events2.api.crm.dynamics.com",
     "https://contoso-events2.api.crm.dynamics.com"),
]

REJECTED = [
    ("", "required"),
    ("http://contoso.crm.dynamics.com", "not_https"),
    ("ftp://contoso.crm.dynamics.com", "not_https"),
    ("contoso.crm.dynamics.com", "not_https"),
    ("https://evil.example", "not_dynamics"),
    ("https://dynamics.com", "not_dynamics"),
    ("https://evildynamics.com", "not_dynamics"),
    ("https://contoso.crm.dynamics.com.evil.example", "not_dynamics"),
    ("https://contoso.crm.dynamics.com.", "not_dynamics"),
    ("https://contoso.crm.dynamics.com:8443", "not_dynamics"),
    ("https://169.254.169.254", "not_dynamics"),
    ("https://localhost", "not_dynamics"),
    ("https://user@contoso.crm.dynamics.com", "invalid"),
    ("https://evil.example\\@contoso.crm.dynamics.com", "invalid"),
    ("https://evil.example#@contoso.crm.dynamics.com", "invalid"),
    ("https://contoso.crm.dynamics.com/api/data/v9.2", "invalid"),
    ("https://contoso.crm.dynamics.com?x=1", "invalid"),
    ("https://contoso.crm.dynamics.com\n.evil.example", "invalid"),
    ("https://contoso.crm.dynamİcs.com", "invalid"),
    ("https://[::1]", "not_dynamics"),
    ("https://contoso.crm.dynamics.com:99999", "invalid"),
    ("https://evil.example%2f.crm.dynamics.com", "not_dynamics"),
    ("https://evil%00.crm.dynamics.com", "not_dynamics"),
    ("https://a;b.crm.dynamics.com", "not_dynamics"),
    ("https://a,b.crm.dynamics.com", "not_dynamics"),
    ("https://.dynamics.com", "not_dynamics"),
    ("https://-.dynamics.com", "not_dynamics"),
    ("https://contoso-.crm.dynamics.com", "not_dynamics"),
    ("https://a..crm.dynamics.com", "not_dynamics"),
    ("https://" + "a" * 64 + ".crm.dynamics.com", "not_dynamics"),
]


@pytest.mark.parametrize("url, expected", ACCEPTED)
def test_dynamics_urls_accepted(url, expected):
    assert environments.validate_environment_url(url) == expected


@pytest.mark.parametrize("url, code", REJECTED)
def test_other_urls_rejected(url, code, settings):
    settings.DYNAMICS_EXTRA_ENVIRONMENT_HOSTS = []
    with pytest.raises(ValidationError) as raised:
        environments.validate_environment_url(url)
    assert raised.value.code == code


def test_sandbox_host_needs_allowlist(settings):
    settings.DYNAMICS_EXTRA_ENVIRONMENT_HOSTS = []
    with pytest.raises(ValidationError):
        environments.validate_environment_url("https://127.0.0.1:8443")
    settings.DYNAMICS_EXTRA_ENVIRONMENT_HOSTS = ["127.0.0.1"]
    assert environments.validate_environment_url("https://127.0.0.1:8443") == \
        "https://127.0.0.1:8443"


def test_allowlisted_host_still_needs_https(settings):
    settings.DYNAMICS_EXTRA_ENVIRONMENT_HOSTS = ["127.0.0.1"]
    with pytest.raises(ValidationError):
        environments.validate_environment_url("http://127.0.0.1:8443")


def test_connect_rejects_non_dynamics_url(dynamics_settings, client, sandbox):
    team = make_team()
    client.force_login(make_admin(team))
    sandbox.store.clear_request_log()
    response = client.post(reverse("integrations:connect", args=[team.pk]),
                           {"environment_url": "https://evil.example"})
    integration = Integration.objects.get(team=team, subteam=None)
    page = client.get(response["Location"])
    assert response.status_code == 302
    assert response["Location"] == reverse("integrations:integration-settings",
                                           args=[integration.pk])
    assert "evil.example is not a Dynamics 365 host" in page.content.decode()
    assert SIGN_IN_SESSION_KEY not in client.session
    assert integration.org_url == sandbox.base_url
    assert not sandbox.store.requests()


def test_connect_rejects_plain_http(dynamics_settings, client, sandbox):
    team = make_team()
    client.force_login(make_admin(team))
    response = client.post(reverse("integrations:connect", args=[team.pk]),
                           {"environment_url": sandbox.base_url.replace("https", "http")},
                           follow=True)
    assert "is not an https URL" in response.content.decode()
    assert SIGN_IN_SESSION_KEY not in client.session


def test_application_user_rejects_non_dynamics_url(dynamics_settings, client, sandbox):
    team = make_team()
    client.force_login(make_admin(team))
    sandbox.store.clear_request_log()
    response = client.post(reverse("integrations:team-application-user", args=[team.pk]), {
        "environment_url": "https://evil.example", "tenant_id": seed.TENANT_ID,
        "client_id": seed.APP_USER_CLIENT_ID, "client_secret": seed.APP_USER_CLIENT_SECRET,
    })
    assert response.status_code == 400
    assert "is not a Dynamics 365 host" in response.content.decode()
    assert not Integration.objects.filter(team=team).exists()
    assert not sandbox.store.requests()


def test_client_rejects_stored_non_dynamics_url(dynamics_settings, sandbox):
    team = make_team()
    integration = Integration.objects.create(team=team, org_url="https://evil.example",
                                             status=Integration.Status.CONNECTED)
    client = connection.client_for(integration)
    with pytest.raises(errors.AuthorizationRequired) as raised:
        client.who_am_i()
    assert "evil.example is not a Dynamics 365 host" in str(raised.value)
    assert client.request_count == 0


def test_client_with_token_rejects_non_dynamics_url(dynamics_settings):
    probe = Integration(pk=1, org_url="http://contoso.crm.dynamics.com")
    client = connection.client_for(probe, access_token="a-token")
    with pytest.raises(errors.AuthorizationRequired):
        client.who_am_i()
    assert client.request_count == 0


def test_sign_in_rejects_non_dynamics_url(dynamics_settings):
    with pytest.raises(ValidationError):
        connection.begin_sign_in("https://evil.example", "http://127.0.0.1:8000/cb/")


def test_misconfigured_discovery_url_rejected(dynamics_settings, client, sandbox):
    dynamics_settings.DYNAMICS_DISCOVERY_URL = "https://discovery.evil.example"
    team = make_team()
    client.force_login(make_admin(team))
    page = client.post(reverse("integrations:connect", args=[team.pk]),
                       {"mode": "discover"}, follow=True)
    assert "The discovery service is misconfigured" in page.content.decode()
    assert SIGN_IN_SESSION_KEY not in client.session


class FakeResponse:
    status_code = 200

    def __init__(self, payload):
        self.payload = payload

    def json(self):
        return self.payload


class FakeSession:
    """Records the discovery request and returns a fixed instance list."""

    def __init__(self, payload):
        self.payload = payload
        self.requests = []

    def get(self, url, headers):
        self.requests.append((url, headers))
        return FakeResponse(self.payload)


def test_discovery_drops_non_dynamics_instances(settings):
    settings.DYNAMICS_DISCOVERY_URL = "https://globaldisco.crm.dynamics.com"
    session = FakeSession({"value": [
        {"FriendlyName": "Good", "UniqueName": "good", "EnvironmentId": "e1",
         "TenantId": "t1", "ApiUrl": "https://good.api.crm.dynamics.com",
         "Url": "https://good.crm.dynamics.com", "State": 0},
        {"FriendlyName": "Evil", "UniqueName": "evil", "EnvironmentId": "e2",
         "TenantId": "t1", "ApiUrl": "https://evil.example", "Url": "https://evil.example",
         "State": 0},
        {"FriendlyName": "Plain", "UniqueName": "plain", "EnvironmentId": "e3",
         "TenantId": "t1", "ApiUrl": "http://plain.crm.dynamics.com", "State": 1},
    ]})

    found = environments.list_environments(session, "a-token")

    assert [env.unique_name for env in found] == ["good"]
    assert found[0].api_url == "https://good.api.crm.dynamics.com"
    assert found[0].state == "Enabled"
    assert session.requests[0][0] == \
        "https://globaldisco.crm.dynamics.com/api/discovery/v2.0/Instances"
    assert session.requests[0][1]["Authorization"] == "Bearer a-token"


def test_discovery_error_status_raises(settings):
    settings.DYNAMICS_DISCOVERY_URL = "https://globaldisco.crm.dynamics.com"
    session = FakeSession({})
    session.get = lambda url, headers: type("Denied", (), {"status_code": 401})()
    with pytest.raises(environments.DiscoveryError) as raised:
        environments.list_environments(session, "a-token")
    assert "HTTP 401" in str(raised.value)


# -- OAuth and CSRF checks ------------------------------------------------------------

def start_connect(client, team):
    response = client.post(reverse("integrations:connect", args=[team.pk]))
    assert response.status_code == 302
    return response["Location"]


def follow_callback(client, callback_url):
    parts = urlsplit(callback_url)
    return client.get(f"{parts.path}?{parts.query}", follow=True)


def test_callback_rejects_tampered_pkce_verifier(dynamics_settings, client, sandbox):
    team = make_team()
    client.force_login(make_admin(team))
    authorize_url = start_connect(client, team)
    session = client.session
    session[SIGN_IN_SESSION_KEY]["flow"]["code_verifier"] = "x" * 64
    session.save()
    callback_url = sign_in_with_form(authorize_url, SANDBOX_ADMIN, sandbox.ca_bundle)

    page = follow_callback(client, callback_url)

    assert "Microsoft sign-in failed" in page.content.decode()
    assert Integration.objects.get(team=team).status == Integration.Status.DISCONNECTED


def test_callback_rejects_other_nonce(dynamics_settings, client, sandbox):
    team = make_team()
    client.force_login(make_admin(team))
    authorize_url = start_connect(client, team)
    session = client.session
    session[SIGN_IN_SESSION_KEY]["flow"]["nonce"] = "not-the-nonce"
    session.save()
    callback_url = sign_in_with_form(authorize_url, SANDBOX_ADMIN, sandbox.ca_bundle)

    page = follow_callback(client, callback_url)

    assert page.status_code == 200
    assert "did not match the sign-in" in page.content.decode()
    assert Integration.objects.get(team=team).status == Integration.Status.DISCONNECTED


def test_callback_code_from_other_browser_rejected(dynamics_settings, client, sandbox):
    team = make_team()
    admin = make_admin(team)
    client.force_login(admin)
    start_connect(client, team)
    attacker = Client()
    attacker.force_login(admin)
    attacker_url = start_connect(attacker, team)
    callback_url = sign_in_with_form(attacker_url, SANDBOX_ADMIN, sandbox.ca_bundle)

    page = follow_callback(client, callback_url)

    assert "did not match the sign-in" in page.content.decode()
    assert Integration.objects.get(team=team).status == Integration.Status.DISCONNECTED


@pytest.mark.parametrize("name, needs_integration", [
    ("integrations:connect", False),
    ("integrations:team-application-user", False),
    ("integrations:connect-integration", True),
    ("integrations:choose-environment", True),
    ("integrations:application-user", True),
    ("integrations:disconnect", True),
])
def test_connection_posts_need_csrf_token(dynamics_settings, name, needs_integration):
    team = make_team()
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(make_admin(team))
    if needs_integration:
        integration = connecting.get_or_create_team_integration(team)
        url = reverse(name, args=[integration.pk])
    else:
        url = reverse(name, args=[team.pk])
    response = browser.post(url, {"mode": "discover"})
    assert response.status_code == 403


@pytest.mark.parametrize("name", ["integrations:connect-integration",
                                  "integrations:disconnect"])
def test_connection_actions_reject_get(dynamics_settings, client, name):
    team = make_team()
    client.force_login(make_admin(team))
    integration = connecting.get_or_create_team_integration(team)
    assert client.get(reverse(name, args=[integration.pk])).status_code == 405


def test_disconnect_deletes_sign_in(connected_team, client):
    client.post(reverse("integrations:disconnect", args=[connected_team.integration.pk]))
    integration = Integration.objects.get(pk=connected_team.integration.pk)
    assert integration.status == Integration.Status.DISCONNECTED
    assert integration.token_cache_encrypted == ""
    assert integration.msal_account_id == ""
    with pytest.raises(errors.AuthorizationRequired):
        connection.client_for(integration).who_am_i()
