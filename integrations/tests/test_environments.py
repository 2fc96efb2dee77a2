"""Connecting through the Global Discovery Service, and one environment per integration."""

from urllib.parse import urlsplit

import pytest
from django.urls import reverse

from dynamics_sandbox.seed import TENANT_ID
from dynamics_sandbox.testing import sign_in_with_form
from integrations import connecting, connection, services
from integrations.client import errors
from integrations.models import Integration, SyncLog
from integrations.views import DISCOVERY_SESSION_KEY
from teams.models import SubteamMembership
from teams.tests.factories import make_admin, make_lead, make_member, make_subteam, make_team

from .conftest import SANDBOX_ADMIN, SANDBOX_READER, unique_email

pytestmark = pytest.mark.django_db

SALES = "contososales"
EVENTS = "contosoevents"


def sign_in_for_discovery(client, admin, sandbox, dynamics_email=SANDBOX_ADMIN,
                          integration=None, team=None):
    """Post Connect Dynamics (discovery), sign in on the sandbox's form and request the
    callback URL. Returns the callback's response without following its redirect."""
    client.force_login(admin)
    if integration is not None:
        url = reverse("integrations:connect-integration", args=[integration.pk])
    else:
        url = reverse("integrations:connect", args=[team.pk])
    response = client.post(url, {"mode": "discover"})
    assert response.status_code == 302, response.content[:500]
    assert response["Location"].startswith(f"{sandbox.base_url}/organizations/")
    callback_url = sign_in_with_form(response["Location"], dynamics_email, sandbox.ca_bundle)
    parts = urlsplit(callback_url)
    return client.get(f"{parts.path}?{parts.query}")


def listed_environments(client):
    return client.session[DISCOVERY_SESSION_KEY]["environments"]


def environment_key(client, unique_name):
    row = next(row for row in listed_environments(client) if row["unique_name"] == unique_name)
    return row["environment_id"]


def pick_form(client, environment):
    """Return the pick page's POST data for `environment` (a listed key or another value)."""
    return {"environment": environment,
            "listing": client.session[DISCOVERY_SESSION_KEY]["listing"]}


def pick(client, team, unique_name):
    integration = Integration.objects.get(team=team, subteam=None)
    return client.post(
        reverse("integrations:choose-environment", args=[integration.pk]),
        pick_form(client, environment_key(client, unique_name)), follow=True)


class DiscoveredTeam:
    """A team connected to one sandbox environment picked from discovery."""

    def __init__(self, client, sandbox, unique_name, dynamics_email=SANDBOX_ADMIN):
        self.team = make_team()
        self.admin = make_admin(self.team)
        self.member = make_member(self.team)
        sign_in_for_discovery(client, self.admin, sandbox, dynamics_email, team=self.team)
        self.page = pick(client, self.team, unique_name)
        self.integration = Integration.objects.get(team=self.team, subteam=None)


def test_discovery_sign_in_opens_pick_page(dynamics_settings, client, sandbox):
    team = make_team()
    response = sign_in_for_discovery(client, make_admin(team), sandbox, team=team)
    integration = Integration.objects.get(team=team, subteam=None)
    assert response.status_code == 302
    assert response["Location"] == reverse("integrations:choose-environment",
                                           args=[integration.pk])
    assert integration.status == Integration.Status.DISCONNECTED


def test_pick_page_lists_reachable_environments(dynamics_settings, client, sandbox):
    team = make_team()
    sign_in_for_discovery(client, make_admin(team), sandbox, team=team)
    integration = Integration.objects.get(team=team, subteam=None)
    page = client.get(reverse("integrations:choose-environment", args=[integration.pk]))
    text = page.content.decode()
    events = sandbox.environment(EVENTS)
    assert page.status_code == 200
    assert "Contoso Sales" in text
    assert "Contoso Events" in text
    assert events.url in text
    assert SALES in text
    assert EVENTS in text
    assert "Enabled" in text
    assert 'name="csrfmiddlewaretoken"' in text


def test_reader_sees_only_sales(dynamics_settings, client, sandbox):
    team = make_team()
    sign_in_for_discovery(client, make_admin(team), sandbox, SANDBOX_READER, team=team)
    assert [row["unique_name"] for row in listed_environments(client)] == [SALES]


def test_picking_environment_connects_it(dynamics_settings, client, sandbox):
    setup = DiscoveredTeam(client, sandbox, EVENTS)
    integration = setup.integration
    events = sandbox.environment(EVENTS)
    assert integration.status == Integration.Status.CONNECTED
    assert integration.org_url == events.url
    assert integration.environment_name == "Contoso Events"
    assert integration.environment_unique_name == EVENTS
    assert integration.environment_id == events.environment_id
    assert integration.tenant_id == TENANT_ID
    assert integration.auth_mode == Integration.AuthMode.SIGNED_IN_USER
    assert integration.integration_user_email == SANDBOX_ADMIN
    assert "System Administrator" in integration.dynamics_roles
    assert DISCOVERY_SESSION_KEY not in client.session


def test_settings_page_shows_environment(dynamics_settings, client, sandbox):
    setup = DiscoveredTeam(client, sandbox, EVENTS)
    text = setup.page.content.decode()
    assert "Connected to Dynamics as alex.admin@contoso.example (Contoso Events)." in text
    assert "Contoso Events (contosoevents)" in text
    assert sandbox.environment(EVENTS).url in text
    assert TENANT_ID in text
    assert "Signed-in user" in text


def test_pick_rejects_unlisted_environment(dynamics_settings, client, sandbox):
    team = make_team()
    sign_in_for_discovery(client, make_admin(team), sandbox, SANDBOX_READER, team=team)
    integration = Integration.objects.get(team=team, subteam=None)
    url = reverse("integrations:choose-environment", args=[integration.pk])
    events = sandbox.environment(EVENTS)
    for value in (events.environment_id, events.url, EVENTS, "https://evil.example"):
        response = client.post(url, pick_form(client, value))
        assert response.status_code == 400, value
    integration.refresh_from_db()
    assert integration.status == Integration.Status.DISCONNECTED
    assert integration.org_url == sandbox.base_url


def test_pick_needs_discovery_sign_in(dynamics_settings, client, sandbox):
    team = make_team()
    admin = make_admin(team)
    integration = connecting.get_or_create_team_integration(team)
    client.force_login(admin)
    page = client.post(reverse("integrations:choose-environment", args=[integration.pk]),
                       {"environment": sandbox.environment(SALES).environment_id},
                       follow=True)
    assert "No list of environments is waiting" in page.content.decode()
    integration.refresh_from_db()
    assert integration.status == Integration.Status.DISCONNECTED


def test_pick_list_belongs_to_its_integration(dynamics_settings, client, sandbox):
    team = make_team()
    admin = make_admin(team)
    sign_in_for_discovery(client, admin, sandbox, team=team)
    other = Integration.objects.create(team=team, subteam=make_subteam(team),
                                       org_url=sandbox.base_url)
    page = client.post(reverse("integrations:choose-environment", args=[other.pk]),
                       {"environment": environment_key(client, SALES)}, follow=True)
    assert "No list of environments is waiting" in page.content.decode()
    other.refresh_from_db()
    assert other.status == Integration.Status.DISCONNECTED


def test_two_teams_sync_into_own_environment(dynamics_settings, client, sandbox):
    sales_team = DiscoveredTeam(client, sandbox, SALES)
    events_team = DiscoveredTeam(client, sandbox, EVENTS)
    sales_lead = make_lead(sales_team.team, sales_team.member, last_name="Sales",
                           email=unique_email("sales"))
    events_lead = make_lead(events_team.team, events_team.member, last_name="Events",
                            email=unique_email("events"))

    sales_log = services.sync_lead_now(sales_lead.pk)
    events_log = services.sync_lead_now(events_lead.pk)

    sales_store = sandbox.environment(SALES).store
    events_store = sandbox.environment(EVENTS).store
    sales_ids = {row["leadid"] for row in sales_store.records("lead")}
    events_ids = {row["leadid"] for row in events_store.records("lead")}
    assert sales_log.outcome == SyncLog.Outcome.CREATED
    assert events_log.outcome == SyncLog.Outcome.CREATED
    assert sales_log.dynamics_record_id in sales_ids
    assert sales_log.dynamics_record_id not in events_ids
    assert events_log.dynamics_record_id in events_ids
    assert events_log.dynamics_record_id not in sales_ids


def test_subteam_syncs_into_own_environment(dynamics_settings, client, sandbox):
    setup = DiscoveredTeam(client, sandbox, SALES)
    subteam = make_subteam(setup.team)
    booth_member = make_member(setup.team)
    SubteamMembership.objects.create(subteam=subteam, user=booth_member)
    own = Integration.objects.create(team=setup.team, subteam=subteam,
                                     org_url=sandbox.base_url)
    sign_in_for_discovery(client, setup.admin, sandbox, integration=own)
    client.post(reverse("integrations:choose-environment", args=[own.pk]),
                pick_form(client, environment_key(client, EVENTS)))
    own.refresh_from_db()
    setup.integration.refresh_from_db()
    booth_lead = make_lead(setup.team, booth_member, last_name="Booth",
                           email=unique_email("booth"))

    log = services.sync_lead_now(booth_lead.pk)

    events_ids = {row["leadid"] for row in sandbox.environment(EVENTS).store.records("lead")}
    sales_ids = {row["leadid"] for row in sandbox.environment(SALES).store.records("lead")}
    assert own.org_url == sandbox.environment(EVENTS).url
    assert own.status == Integration.Status.CONNECTED
    assert setup.integration.org_url == sandbox.base_url
    assert setup.integration.environment_unique_name == SALES
    assert log.integration_id == own.pk
    assert log.dynamics_record_id in events_ids
    assert log.dynamics_record_id not in sales_ids


def test_token_of_one_environment_rejected_by_other(dynamics_settings, client, sandbox):
    setup = DiscoveredTeam(client, sandbox, SALES)
    sales_token = connection.TokenProvider(setup.integration)()
    events = Integration(pk=setup.integration.pk, org_url=sandbox.environment(EVENTS).url)
    sales = Integration(pk=setup.integration.pk, org_url=setup.integration.org_url)

    assert connection.client_for(sales, access_token=sales_token).who_am_i()["UserId"]
    with pytest.raises(errors.AuthorizationRequired):
        connection.client_for(events, access_token=sales_token).who_am_i()


def test_discovery_token_rejected_by_environment(dynamics_settings, client, sandbox):
    setup = DiscoveredTeam(client, sandbox, SALES)
    cache = connection.decrypt_cache(setup.integration.token_cache_encrypted)
    app = connection.build_msal_app(cache)
    account = app.get_accounts()[0]
    discovery = app.acquire_token_silent([f"{sandbox.discovery_url}/.default"], account)
    assert "access_token" in discovery
    with pytest.raises(errors.AuthorizationRequired):
        connection.client_for(setup.integration,
                              access_token=discovery["access_token"]).who_am_i()


def test_rediscovery_keeps_connection_date(dynamics_settings, client, sandbox):
    setup = DiscoveredTeam(client, sandbox, EVENTS)
    first = Integration.objects.get(pk=setup.integration.pk)
    sign_in_for_discovery(client, setup.admin, sandbox, integration=first)
    pick(client, setup.team, EVENTS)
    second = Integration.objects.get(pk=first.pk)
    assert second.connected_at == first.connected_at
    assert second.authorized_at > first.authorized_at
    assert second.org_url == first.org_url


def test_moving_environment_resets_connection(dynamics_settings, client, sandbox):
    setup = DiscoveredTeam(client, sandbox, EVENTS)
    first = Integration.objects.get(pk=setup.integration.pk)
    sign_in_for_discovery(client, setup.admin, sandbox, integration=first)
    pick(client, setup.team, SALES)
    second = Integration.objects.get(pk=first.pk)
    assert second.org_url == sandbox.base_url
    assert second.environment_unique_name == SALES
    assert second.connected_at > first.connected_at
    assert second.dynamics_metadata


def test_reconnect_keeps_picked_environment(dynamics_settings, client, sandbox):
    setup = DiscoveredTeam(client, sandbox, EVENTS)
    response = client.post(reverse("integrations:connect-integration",
                                   args=[setup.integration.pk]))
    callback_url = sign_in_with_form(response["Location"], SANDBOX_ADMIN, sandbox.ca_bundle)
    parts = urlsplit(callback_url)
    client.get(f"{parts.path}?{parts.query}")
    integration = Integration.objects.get(pk=setup.integration.pk)
    assert integration.org_url == sandbox.environment(EVENTS).url
    assert integration.environment_name == "Contoso Events"
    assert integration.status == Integration.Status.CONNECTED


def test_url_connect_reaches_second_environment(dynamics_settings, client, sandbox):
    team = make_team()
    admin = make_admin(team)
    client.force_login(admin)
    events = sandbox.environment(EVENTS)
    response = client.post(reverse("integrations:connect", args=[team.pk]),
                           {"environment_url": events.url})
    callback_url = sign_in_with_form(response["Location"], SANDBOX_ADMIN, sandbox.ca_bundle)
    parts = urlsplit(callback_url)
    client.get(f"{parts.path}?{parts.query}")
    integration = Integration.objects.get(team=team, subteam=None)
    assert integration.org_url == events.url
    assert integration.status == Integration.Status.CONNECTED
    assert integration.environment_name == ""
    assert integration.tenant_id == TENANT_ID


def test_pick_expires(dynamics_settings, client, sandbox):
    team = make_team()
    sign_in_for_discovery(client, make_admin(team), sandbox, team=team)
    integration = Integration.objects.get(team=team, subteam=None)
    key = environment_key(client, SALES)
    session = client.session
    session[DISCOVERY_SESSION_KEY]["started"] -= 16 * 60
    session.save()
    page = client.post(reverse("integrations:choose-environment", args=[integration.pk]),
                       {"environment": key}, follow=True)
    assert "No list of environments is waiting" in page.content.decode()
    integration.refresh_from_db()
    assert integration.status == Integration.Status.DISCONNECTED


def test_cancel_forgets_environment_list(dynamics_settings, client, sandbox):
    team = make_team()
    sign_in_for_discovery(client, make_admin(team), sandbox, team=team)
    integration = Integration.objects.get(team=team, subteam=None)

    page = client.post(reverse("integrations:choose-environment", args=[integration.pk]),
                       {**pick_form(client, ""), "cancel": "Cancel"}, follow=True)

    integration.refresh_from_db()
    assert "Connecting was cancelled; the integration is unchanged." in page.content.decode()
    assert DISCOVERY_SESSION_KEY not in client.session
    assert integration.status == Integration.Status.DISCONNECTED


def test_settings_page_drops_expired_list(dynamics_settings, client, sandbox):
    team = make_team()
    sign_in_for_discovery(client, make_admin(team), sandbox, team=team)
    session = client.session
    session[DISCOVERY_SESSION_KEY]["started"] -= 16 * 60
    session.save()

    response = client.get(reverse("integrations:settings"))

    assert response.status_code == 200
    assert DISCOVERY_SESSION_KEY not in client.session


def test_settings_page_keeps_fresh_list(dynamics_settings, client, sandbox):
    team = make_team()
    sign_in_for_discovery(client, make_admin(team), sandbox, team=team)

    response = client.get(reverse("integrations:settings"))

    assert response.status_code == 200
    assert DISCOVERY_SESSION_KEY in client.session


def test_pick_from_replaced_list_is_refused(dynamics_settings, client, sandbox):
    team = make_team()
    admin = make_admin(team)
    sign_in_for_discovery(client, admin, sandbox, team=team)
    first_tab_form = pick_form(client, environment_key(client, SALES))
    # Another tab signs in again, as another Dynamics user, before this tab's pick.
    sign_in_for_discovery(client, admin, sandbox, SANDBOX_READER, team=team)
    integration = Integration.objects.get(team=team, subteam=None)

    page = client.post(reverse("integrations:choose-environment", args=[integration.pk]),
                       first_tab_form, follow=True)

    integration.refresh_from_db()
    text = page.content.decode()
    assert "The list of environments changed after this page was shown" in text
    assert "Choose a Dynamics environment" in text
    assert integration.status == Integration.Status.DISCONNECTED
    assert DISCOVERY_SESSION_KEY in client.session


def test_cancel_keeps_newer_list(dynamics_settings, client, sandbox):
    team = make_team()
    admin = make_admin(team)
    sign_in_for_discovery(client, admin, sandbox, team=team)
    first_tab_form = {**pick_form(client, ""), "cancel": "Cancel"}
    sign_in_for_discovery(client, admin, sandbox, SANDBOX_READER, team=team)
    integration = Integration.objects.get(team=team, subteam=None)
    url = reverse("integrations:choose-environment", args=[integration.pk])

    client.post(url, first_tab_form)
    page = pick(client, team, SALES)

    integration.refresh_from_db()
    assert "Connected to Dynamics as riley.reader@" in page.content.decode()
    assert integration.status == Integration.Status.CONNECTED


def test_list_without_id_still_picks(dynamics_settings, client, sandbox):
    team = make_team()
    sign_in_for_discovery(client, make_admin(team), sandbox, team=team)
    session = client.session
    del session[DISCOVERY_SESSION_KEY]["listing"]
    session.save()
    integration = Integration.objects.get(team=team, subteam=None)

    client.get(reverse("integrations:choose-environment", args=[integration.pk]))
    pick(client, team, SALES)

    integration.refresh_from_db()
    assert integration.status == Integration.Status.CONNECTED


def test_cancel_without_list_is_not_an_error(dynamics_settings, client, sandbox):
    team = make_team()
    integration = connecting.get_or_create_team_integration(team)
    client.force_login(make_admin(team))

    page = client.post(reverse("integrations:choose-environment", args=[integration.pk]),
                       {"cancel": "Cancel"}, follow=True)

    text = page.content.decode()
    assert "Connecting was cancelled" in text
    assert "No list of environments is waiting" not in text


def test_connected_team_fixture_still_connects(connected_team, sandbox):
    """The URL path that the smoke run and most tests post still connects."""
    assert connected_team.integration.org_url == sandbox.base_url
    assert connected_team.integration.status == Integration.Status.CONNECTED


def test_lead_resyncs_after_environment_move(dynamics_settings, client, sandbox):
    """A lead synced into one environment lands in the next one after a move, once."""
    setup = DiscoveredTeam(client, sandbox, EVENTS)
    email = unique_email("moved")
    lead = make_lead(setup.team, setup.member, last_name="Moved", email=email,
                     notes="Met at the Events booth")
    first = services.sync_lead_now(lead.pk)
    sign_in_for_discovery(client, setup.admin, sandbox, integration=setup.integration)
    pick(client, setup.team, SALES)

    second = services.sync_lead_now(lead.pk)

    sales_rows = [row for row in sandbox.environment(SALES).store.records("lead")
                  if row.get("emailaddress1") == email]
    events_rows = [row for row in sandbox.environment(EVENTS).store.records("lead")
                   if row.get("emailaddress1") == email]
    sales_notes = [row for row in sandbox.environment(SALES).store.records("annotation")
                   if row.get("_objectid_value") == second.dynamics_record_id]
    assert first.outcome == SyncLog.Outcome.CREATED
    assert second.outcome == SyncLog.Outcome.CREATED
    assert len(sales_rows) == 1
    assert len(events_rows) == 1
    assert sales_rows[0]["leadid"] == second.dynamics_record_id
    assert len(sales_notes) == 1
