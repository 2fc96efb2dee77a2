"""Connecting as an application user (client credentials), end to end against the sandbox."""

import logging

import pytest
from django.urls import reverse

from dynamics_sandbox import seed
from integrations import connection, services, settings_page
from integrations.client import errors
from integrations.models import Integration, SyncLog
from teams.tests.factories import make_admin, make_lead, make_member, make_team

from .conftest import unique_email

pytestmark = pytest.mark.django_db

EVENTS = "contosoevents"


def app_user_form(sandbox, **overrides):
    data = {
        "environment_url": sandbox.base_url,
        "tenant_id": seed.TENANT_ID,
        "client_id": seed.APP_USER_CLIENT_ID,
        "client_secret": seed.APP_USER_CLIENT_SECRET,
    }
    data.update(overrides)
    return data


class AppUserTeam:
    """A team whose full-team integration is connected as the sandbox's application user."""

    def __init__(self, client, sandbox, **overrides):
        self.team = make_team()
        self.admin = make_admin(self.team)
        self.member = make_member(self.team)
        client.force_login(self.admin)
        self.response = client.post(
            reverse("integrations:team-application-user", args=[self.team.pk]),
            app_user_form(sandbox, **overrides), follow=True)
        self.integration = Integration.objects.filter(team=self.team, subteam=None).first()


@pytest.fixture
def app_team(client, sandbox, dynamics_settings):
    return AppUserTeam(client, sandbox)


def test_application_user_connects(app_team):
    integration = app_team.integration
    assert integration.status == Integration.Status.CONNECTED
    assert integration.auth_mode == Integration.AuthMode.APPLICATION_USER
    assert integration.integration_user_name == "Lead Sync Application"
    assert integration.integration_user_email == ""
    assert integration.dynamics_user_id == seed.APP_USER_ID
    assert integration.app_client_id == seed.APP_USER_CLIENT_ID
    assert integration.tenant_id == seed.TENANT_ID
    assert "Salesperson" in integration.dynamics_roles
    assert integration.token_cache_encrypted == ""
    assert integration.connected_at is not None


def test_application_user_secret_stored_encrypted(app_team):
    stored = app_team.integration.app_client_secret_encrypted
    assert stored
    assert seed.APP_USER_CLIENT_SECRET not in stored
    assert connection.decrypt_secret(stored) == seed.APP_USER_CLIENT_SECRET


def test_settings_page_shows_application_user(app_team, client):
    text = client.get(reverse("integrations:integration-settings",
                              args=[app_team.integration.pk])).content.decode()
    assert "Connected to Dynamics (" in app_team.response.content.decode()
    assert "Lead Sync Application" in text
    assert seed.APP_USER_CLIENT_ID in text
    assert "Application user" in text
    assert "Salesperson" in text
    assert seed.TENANT_ID in text
    assert seed.APP_USER_CLIENT_SECRET not in text


def test_application_user_form_never_shows_secret(app_team, client):
    page = client.get(reverse("integrations:application-user",
                              args=[app_team.integration.pk]))
    text = page.content.decode()
    assert page.status_code == 200
    assert seed.APP_USER_CLIENT_ID in text
    assert seed.APP_USER_CLIENT_SECRET not in text
    assert app_team.integration.app_client_secret_encrypted not in text


def test_application_user_syncs_lead(app_team, sandbox):
    lead = make_lead(app_team.team, app_team.member, last_name="Server",
                     email=unique_email("s2s"))

    log = services.sync_lead_now(lead.pk)

    record = next(row for row in sandbox.store.records("lead")
                  if row["leadid"] == log.dynamics_record_id)
    assert log.outcome == SyncLog.Outcome.CREATED
    assert record["lastname"] == "Server"
    assert record["_ownerid_value"] == seed.APP_USER_ID


def test_application_user_in_second_environment(client, sandbox, dynamics_settings):
    events = sandbox.environment(EVENTS)
    setup = AppUserTeam(client, sandbox, environment_url=events.url)
    lead = make_lead(setup.team, setup.member, last_name="Events",
                     email=unique_email("s2s-events"))

    log = services.sync_lead_now(lead.pk)

    assert setup.integration.org_url == events.url
    assert log.outcome == SyncLog.Outcome.CREATED
    assert log.dynamics_record_id in {row["leadid"] for row in events.store.records("lead")}
    assert log.dynamics_record_id not in {row["leadid"]
                                          for row in sandbox.store.records("lead")}


def test_application_user_permissions_page(app_team, client):
    page = client.get(reverse("integrations:permissions", args=[app_team.integration.pk]))
    text = page.content.decode()
    assert page.status_code == 200
    assert "Application user: <strong>Lead Sync Application</strong>" in text
    assert 'data-privilege="prvCreateLead" data-present="true"' in text


def test_application_user_connection_checks(app_team):
    checks = settings_page.check_connection(app_team.integration)
    assert [check.passed for check in checks] == [True, True, True]


def test_application_user_token_renews(app_team):
    provider = connection.ApplicationUserTokenProvider(app_team.integration)
    first = provider()
    assert provider() == first
    assert provider(force_refresh=True) != first


def test_reauthorize_keeps_connection_date(app_team, client, sandbox):
    first = Integration.objects.get(pk=app_team.integration.pk)
    client.post(reverse("integrations:application-user", args=[first.pk]),
                app_user_form(sandbox))
    second = Integration.objects.get(pk=first.pk)
    assert second.status == Integration.Status.CONNECTED
    assert second.connected_at == first.connected_at
    assert second.authorized_at > first.authorized_at


def test_reconnect_button_opens_form(app_team, client):
    response = client.post(reverse("integrations:connect-integration",
                                   args=[app_team.integration.pk]))
    assert response.status_code == 302
    assert response["Location"] == reverse("integrations:application-user",
                                           args=[app_team.integration.pk])


def test_disconnect_deletes_secret(app_team, client):
    client.post(reverse("integrations:disconnect", args=[app_team.integration.pk]))
    integration = Integration.objects.get(pk=app_team.integration.pk)
    assert integration.status == Integration.Status.DISCONNECTED
    assert integration.app_client_secret_encrypted == ""
    assert integration.token_cache_encrypted == ""
    with pytest.raises(errors.AuthorizationRequired):
        connection.client_for(integration).who_am_i()


@pytest.mark.parametrize("overrides, expected", [
    ({"client_secret": "not-the-secret"},
     "(AADSTS7000215). The client secret is wrong."),
    ({"client_id": seed.EXPIRED_APP_CLIENT_ID,
      "client_secret": seed.EXPIRED_APP_CLIENT_SECRET},
     "(AADSTS7000222). The client secret has expired."),
    ({"client_id": "0f0f0f0f-1111-4222-8333-444455556666"},
     "(AADSTS700016). No application with this client id exists"),
    ({"tenant_id": "0f0f0f0f-aaaa-4bbb-8ccc-ddddeeeeffff"},
     "The tenant was not found."),
])
def test_rejected_application_explained(client, sandbox, dynamics_settings, overrides,
                                        expected):
    setup = AppUserTeam(client, sandbox, **overrides)
    text = setup.response.content.decode()
    assert setup.response.status_code == 400
    assert expected in text
    assert setup.integration.status == Integration.Status.DISCONNECTED
    assert setup.integration.app_client_secret_encrypted == ""


def test_unlicensed_application_explained(client, sandbox, dynamics_settings):
    setup = AppUserTeam(client, sandbox, client_id=seed.UNLICENSED_APP_CLIENT_ID,
                        client_secret=seed.UNLICENSED_APP_CLIENT_SECRET)
    text = setup.response.content.decode()
    assert setup.response.status_code == 400
    assert "not an application user of this environment" in text
    assert setup.integration.status == Integration.Status.DISCONNECTED


def test_multi_tenant_alias_rejected(client, sandbox, dynamics_settings):
    for tenant in ("organizations", "common"):
        setup = AppUserTeam(client, sandbox, tenant_id=tenant)
        assert setup.response.status_code == 400
        assert "common and organizations are not accepted" in setup.response.content.decode()
        assert setup.integration is None


def test_rotated_secret_needs_reauthorization(app_team):
    """A secret that stops working after connecting marks the integration for an admin."""
    lead = make_lead(app_team.team, app_team.member, email=unique_email("expired"))
    connection.forget_application_tokens(app_team.integration.pk)
    Integration.objects.filter(pk=app_team.integration.pk).update(
        app_client_secret_encrypted=connection.encrypt_text("rotated-away"))

    services.sync_lead_now(lead.pk)

    integration = Integration.objects.get(pk=app_team.integration.pk)
    assert integration.status == Integration.Status.REAUTHORIZATION_NEEDED
    assert "AADSTS7000215" in integration.last_error


def test_secret_never_logged(client, sandbox, dynamics_settings, caplog):
    caplog.set_level(logging.DEBUG)
    AppUserTeam(client, sandbox)
    AppUserTeam(client, sandbox, client_id=seed.EXPIRED_APP_CLIENT_ID,
                client_secret=seed.EXPIRED_APP_CLIENT_SECRET)
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert seed.APP_USER_CLIENT_ID in logged
    assert seed.APP_USER_CLIENT_SECRET not in logged
    assert seed.EXPIRED_APP_CLIENT_SECRET not in logged
