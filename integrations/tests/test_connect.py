import msal
import pytest
from django.urls import reverse

from integrations import connection
from integrations.client import errors
from integrations.models import Integration

from teams.tests.factories import make_admin, make_member, make_team

from .conftest import SANDBOX_ADMIN, SANDBOX_READER, ConnectedTeam, connect_through_sign_in

pytestmark = pytest.mark.django_db


def test_connect_stores_integration_user(connected_team):
    integration = connected_team.integration
    assert integration.status == Integration.Status.CONNECTED
    assert integration.integration_user_email == SANDBOX_ADMIN
    assert integration.integration_user_name == "Alex Admin"
    assert integration.connected_by == connected_team.admin


def test_connect_stores_dates_and_roles(connected_team):
    integration = connected_team.integration
    assert integration.connected_at is not None
    assert integration.authorized_at == integration.connected_at
    assert "System Administrator" in integration.dynamics_roles


def test_settings_page_shows_authorization_info(connected_team, client):
    page = client.get(reverse("integrations:settings"))
    text = page.content.decode()
    assert page.status_code == 200
    assert SANDBOX_ADMIN in text
    assert "System Administrator" in text
    assert connected_team.integration.connected_at.strftime("%Y-%m-%d %H:%M") in text
    assert "Reconnect Dynamics" in text


def test_connect_confirms_success(connected_team):
    assert f"Connected to Dynamics as {SANDBOX_ADMIN}" in connected_team.page.content.decode()


def test_reconnect_keeps_connection_date(connected_team, client, sandbox):
    first = Integration.objects.get(pk=connected_team.integration.pk)
    connect_through_sign_in(client, connected_team.team, connected_team.admin, sandbox,
                            SANDBOX_READER)
    second = Integration.objects.get(pk=first.pk)
    assert second.connected_at == first.connected_at
    assert second.authorized_at > first.authorized_at
    assert second.integration_user_email == SANDBOX_READER


def test_token_cache_stored_encrypted(connected_team):
    stored = connected_team.integration.token_cache_encrypted
    cache = connection.decrypt_cache(stored)
    assert "RefreshToken" not in stored
    assert list(cache.search(msal.TokenCache.CredentialType.REFRESH_TOKEN))


def test_token_provider_renews_silently(connected_team):
    provider = connection.TokenProvider(connected_team.integration)
    cached = provider()
    renewed = provider(force_refresh=True)
    assert cached
    assert renewed != cached
    assert provider() == renewed


def test_callback_without_sign_in_in_progress(dynamics_settings, client):
    team = make_team()
    client.force_login(make_admin(team))
    page = client.get(reverse("integrations:callback") + "?code=x&state=y", follow=True)
    assert "No Dynamics sign-in was in progress" in page.content.decode()
    assert not Integration.objects.filter(team=team, status="connected").exists()


def test_callback_with_wrong_state_rejected(dynamics_settings, client, sandbox):
    team = make_team()
    client.force_login(make_admin(team))
    client.post(reverse("integrations:connect", args=[team.pk]))
    page = client.get(reverse("integrations:callback") + "?code=x&state=forged", follow=True)
    assert "did not match the sign-in" in page.content.decode()
    assert Integration.objects.get(team=team).status == Integration.Status.DISCONNECTED


def test_connect_requires_team_admin(dynamics_settings, client):
    team = make_team()
    client.force_login(make_member(team))
    response = client.post(reverse("integrations:connect", args=[team.pk]))
    assert response.status_code == 404
    assert not Integration.objects.filter(team=team).exists()


def test_connect_rejects_get(dynamics_settings, client):
    team = make_team()
    client.force_login(make_admin(team))
    response = client.get(reverse("integrations:connect", args=[team.pk]))
    assert response.status_code == 405


def test_token_provider_survives_concurrent_renewal(connected_team):
    """Two workers loaded the same refresh token; the sandbox, stricter than Entra ID,
    accepts it only once. The slower worker must pick up the newer stored token."""
    first = connection.TokenProvider(Integration.objects.get(pk=connected_team.integration.pk))
    second = connection.TokenProvider(Integration.objects.get(pk=connected_team.integration.pk))
    first()
    second()
    first(force_refresh=True)
    token = second(force_refresh=True)
    assert token
    assert Integration.objects.get(pk=connected_team.integration.pk).status == "connected"


def test_token_provider_expired_refresh_token(connected_team, sandbox):
    sandbox.store.expire_access_tokens()
    sandbox.store.expire_refresh_tokens()
    provider = connection.TokenProvider(connected_team.integration)
    with pytest.raises(errors.AuthorizationRequired) as raised:
        provider(force_refresh=True)
    assert "invalid_grant" in str(raised.value)


def test_wrong_client_secret_needs_reauthorization(connected_team, settings):
    settings.DYNAMICS_CLIENT_SECRET = "not-the-secret"
    provider = connection.TokenProvider(connected_team.integration)
    with pytest.raises(errors.AuthorizationRequired) as raised:
        provider(force_refresh=True)
    assert "invalid_client" in str(raised.value)


def test_connect_warns_of_missing_privileges(client, dynamics_settings, sandbox):
    setup = ConnectedTeam(client, sandbox, SANDBOX_READER)

    text = setup.page.content.decode()

    assert "The connected Dynamics user lacks" in text
    assert "prvCreateLead" in text
    assert "prvReadLead" not in text


def test_connect_reads_roles_once(client, dynamics_settings, sandbox):
    sandbox.store.clear_request_log()

    setup = ConnectedTeam(client, sandbox, SANDBOX_READER)

    role_reads = [row for row in sandbox.store.requests(method="GET")
                  if "systemuserroles_association" in (row["query"] or "")]
    privilege_reads = [row for row in sandbox.store.requests(method="GET")
                       if row["path"].endswith("RetrieveUserPrivileges()")]
    assert setup.integration.dynamics_roles
    assert len(role_reads) == 1
    assert len(privilege_reads) == 1


def test_connect_as_admin_has_no_privilege_warning(connected_team):
    assert "lacks" not in connected_team.page.content.decode()
