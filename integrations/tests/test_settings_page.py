"""The Sync Settings page: permissions, connection checks, saving settings and mappings,
and who may see which integration. Runs against the sandbox over HTTPS."""

import pytest
from django.test import Client
from django.urls import reverse

from integrations.models import FieldMapping, Integration, SettingsChange
from teams.models import SubteamMembership
from teams.tests.factories import make_admin, make_member, make_subteam, make_team

from .conftest import SANDBOX_ADMIN, SANDBOX_READER, ConnectedTeam

pytestmark = pytest.mark.django_db


def saved_changes(integration):
    """Return the integration's history entries of saved settings, not of connections."""
    return SettingsChange.objects.filter(integration=integration).exclude(
        changes__has_key="authorized_at")

BOOLEAN_SETTINGS = ("auto_sync", "sync_notes", "update_existing_contacts",
                    "search_accounts_by_website", "member_sync_allowed")


def settings_url(integration):
    return reverse("integrations:integration-settings", args=[integration.pk])


def mapping_row(mapping):
    return {"id": mapping.pk, "entity": mapping.entity, "column": mapping.column,
            "value_type": "dynamic" if mapping.source else "fixed",
            "source": mapping.source, "fixed_value": mapping.fixed_value,
            "mode": mapping.mode}


def post_data(integration, rows=None, **overrides):
    """Return the POST body of the page as it is shown, changed by `overrides`.

    `rows` replaces the mapping rows. Each is a dict like mapping_row() returns, with an
    optional "DELETE": "on".
    """
    values = {name: getattr(integration, name) for name in BOOLEAN_SETTINGS}
    values["primary_object"] = integration.primary_object
    values["assignment"] = (f"subteam:{integration.subteam_id}" if integration.subteam_id
                            else "team")
    values.update(overrides)
    data = {name: value for name, value in values.items() if value is not False}
    data.update({name: "on" for name in BOOLEAN_SETTINGS if values[name] is True})

    if rows is None:
        rows = [mapping_row(mapping) for mapping in integration.field_mappings.all()]
    initial = sum(1 for row in rows if row.get("id"))
    data["mappings-TOTAL_FORMS"] = str(len(rows))
    data["mappings-INITIAL_FORMS"] = str(initial)
    for index, row in enumerate(rows):
        for field, value in row.items():
            if value is not None:
                data[f"mappings-{index}-{field}"] = value
    return data


def privilege_row(text, name):
    start = text.index(f'data-privilege="{name}"')
    return text[start:text.index("</tr>", start)]


# -- Permissions ------------------------------------------------------------------------

def test_permissions_admin_has_all(connected_team, client):
    url = reverse("integrations:permissions", args=[connected_team.integration.pk])
    text = client.get(url).content.decode()
    assert 'data-present="false"' not in text
    assert 'data-privilege="prvAppendToNote" data-present="true"' in text
    assert "System Administrator" in text


def test_permissions_show_depth(connected_team, client):
    url = reverse("integrations:permissions", args=[connected_team.integration.pk])
    text = client.get(url).content.decode()
    assert "Global: every record in the organization" in privilege_row(text, "prvCreateLead")


def test_permissions_reader_missing_create(client, sandbox, dynamics_settings):
    reader = ConnectedTeam(client, sandbox, SANDBOX_READER)
    url = reverse("integrations:permissions", args=[reader.integration.pk])
    text = client.get(url).content.decode()
    create = privilege_row(text, "prvCreateLead")
    assert 'data-present="false"' in create
    assert "no new leads can be created" in create
    assert 'data-present="true"' in privilege_row(text, "prvReadLead")
    assert "Sales Reader" in text


def test_permissions_reader_missing_writes(client, sandbox, dynamics_settings):
    reader = ConnectedTeam(client, sandbox, SANDBOX_READER)
    url = reverse("integrations:permissions", args=[reader.integration.pk])
    text = client.get(url).content.decode()
    for name in ("prvWriteContact", "prvAppendToAccount", "prvCreateNote"):
        assert 'data-present="false"' in privilege_row(text, name), name


def test_settings_page_links_permissions(connected_team, client):
    text = client.get(settings_url(connected_team.integration)).content.decode()
    assert 'id="see-permissions"' in text


# -- Connection actions -----------------------------------------------------------------

def test_connection_checks_pass(connected_team, client):
    url = reverse("integrations:test-connection", args=[connected_team.integration.pk])
    text = client.post(url, follow=True).content.decode()
    assert "Sign-in and WhoAmI: passed" in text
    assert "Read the user&#x27;s roles: passed" in text
    assert "Query leads: passed" in text


def test_connection_check_expired_sign_in(connected_team, client, sandbox):
    sandbox.store.expire_access_tokens()
    sandbox.store.expire_refresh_tokens()
    url = reverse("integrations:test-connection", args=[connected_team.integration.pk])
    text = client.post(url, follow=True).content.decode()
    integration = Integration.objects.get(pk=connected_team.integration.pk)
    assert "Sign-in and WhoAmI: failed" in text
    assert "Click Reconnect" in text
    assert integration.status == Integration.Status.REAUTHORIZATION_NEEDED


def test_reauthorization_reason_shown(connected_team, client):
    Integration.objects.filter(pk=connected_team.integration.pk).update(
        status=Integration.Status.REAUTHORIZATION_NEEDED, last_error="Refresh token expired.")
    text = client.get(settings_url(connected_team.integration)).content.decode()
    assert "Re-authorization needed: Refresh token expired." in text


def test_disconnect_deletes_tokens(connected_team, client):
    integration = connected_team.integration
    mappings = integration.field_mappings.count()
    url = reverse("integrations:disconnect", args=[integration.pk])
    client.post(url)
    integration.refresh_from_db()
    assert integration.token_cache_encrypted == ""
    assert integration.status == Integration.Status.DISCONNECTED
    assert integration.field_mappings.count() == mappings
    assert integration.integration_user_email == SANDBOX_ADMIN


def test_disconnect_rejects_get(connected_team, client):
    url = reverse("integrations:disconnect", args=[connected_team.integration.pk])
    assert client.get(url).status_code == 405


# -- Saving -----------------------------------------------------------------------------

def test_save_records_old_and_new(connected_team, client):
    integration = connected_team.integration
    response = client.post(settings_url(integration),
                           post_data(integration, auto_sync=False, primary_object="contact"),
                           follow=True)
    change = saved_changes(integration).get()
    assert "Settings saved." in response.content.decode()
    assert change.changes["auto_sync"] == {"old": True, "new": False}
    assert change.changes["primary_object"] == {"old": "lead", "new": "contact"}
    assert change.changed_by == connected_team.admin


def test_save_advanced_settings(connected_team, client):
    integration = connected_team.integration
    client.post(settings_url(integration),
                post_data(integration, member_sync_allowed=False, sync_notes=False))
    integration.refresh_from_db()
    assert integration.member_sync_allowed is False
    assert integration.sync_notes is False


def test_save_mapping_changes(connected_team, client):
    integration = connected_team.integration
    rows = [mapping_row(mapping) for mapping in integration.field_mappings.all()]
    removed = next(row for row in rows if row["column"] == "websiteurl")
    removed["DELETE"] = "on"
    edited = next(row for row in rows if row["column"] == "jobtitle")
    edited["mode"] = "complete"
    rows.append({"entity": "lead", "column": "leadsourcecode", "value_type": "fixed",
                 "fixed_value": "7", "mode": "overwrite"})
    client.post(settings_url(integration), post_data(integration, rows=rows))
    mappings = saved_changes(integration).get().changes["mappings"]
    assert mappings["removed"][0]["column"] == removed["column"]
    assert mappings["changed"][0]["mode"] == {"old": "overwrite", "new": "complete"}
    assert mappings["added"][0]["column"] == "leadsourcecode"
    assert not FieldMapping.objects.filter(pk=removed["id"]).exists()


def test_save_unchanged_records_nothing(connected_team, client):
    integration = connected_team.integration
    response = client.post(settings_url(integration), post_data(integration), follow=True)
    assert "nothing had changed" in response.content.decode()
    assert not saved_changes(integration).exists()


def test_invalid_column_saves_nothing(connected_team, client):
    integration = connected_team.integration
    rows = [mapping_row(mapping) for mapping in integration.field_mappings.all()]
    rows[0]["column"] = "jobtitel"
    response = client.post(settings_url(integration),
                           post_data(integration, rows=rows, auto_sync=False))
    integration.refresh_from_db()
    assert response.status_code == 400
    assert "has no column &#x27;jobtitel&#x27;" in response.content.decode()
    assert integration.auto_sync is True
    assert not saved_changes(integration).exists()


def test_duplicate_column_rejected(connected_team, client):
    integration = connected_team.integration
    rows = [mapping_row(mapping) for mapping in integration.field_mappings.all()]
    rows.append({**rows[0], "id": None})
    response = client.post(settings_url(integration), post_data(integration, rows=rows))
    assert response.status_code == 400
    assert "is already mapped" in response.content.decode()


def test_assignment_to_taken_subteam(connected_team, client):
    integration = connected_team.integration
    subteam = make_subteam(connected_team.team, "Events")
    Integration.objects.create(team=connected_team.team, subteam=subteam,
                               org_url=integration.org_url)
    response = client.post(settings_url(integration),
                           post_data(integration, assignment=f"subteam:{subteam.pk}"))
    integration.refresh_from_db()
    assert response.status_code == 400
    assert "The subteam Events already has an integration" in response.content.decode()
    assert integration.subteam_id is None


def test_add_subteam_integration(connected_team, client):
    subteam = make_subteam(connected_team.team, "Fairs")
    url = reverse("integrations:add-subteam-integration")
    client.post(url, {"subteam": subteam.pk})
    integration = Integration.objects.get(subteam=subteam)
    assert integration.status == Integration.Status.DISCONNECTED
    assert integration.field_mappings.exists()


def test_get_changes_nothing(connected_team, client):
    integration = connected_team.integration
    client.get(settings_url(integration))
    client.get(reverse("integrations:settings"))
    after = Integration.objects.get(pk=integration.pk)
    assert after.updated_at == integration.updated_at
    assert not SettingsChange.objects.exclude(changes__has_key="authorized_at").exists()


def test_save_requires_csrf(connected_team):
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(connected_team.admin)
    integration = connected_team.integration
    response = strict.post(settings_url(integration), post_data(integration, auto_sync=False))
    assert response.status_code == 403


# -- Who may see what -------------------------------------------------------------------

class SubteamSetup:
    """A team with a full-team integration and two subteam integrations. The subteam
    admin administers only the first subteam."""

    def __init__(self):
        self.team = make_team()
        self.full = Integration.objects.create(team=self.team, org_url="https://org.example")
        self.own = make_subteam(self.team, "East")
        self.other = make_subteam(self.team, "West")
        self.own_integration = Integration.objects.create(
            team=self.team, subteam=self.own, org_url="https://org.example")
        self.other_integration = Integration.objects.create(
            team=self.team, subteam=self.other, org_url="https://org.example")
        self.admin = make_member(self.team)
        SubteamMembership.objects.create(subteam=self.own, user=self.admin, is_admin=True)


@pytest.fixture
def subteams(db):
    return SubteamSetup()


def test_subteam_admin_sees_own(subteams, client):
    client.force_login(subteams.admin)
    text = client.get(reverse("integrations:settings")).content.decode()
    assert f'data-integration="{subteams.own_integration.pk}"' in text
    assert "Full team:" not in text


def test_subteam_admin_other_404(subteams, client):
    client.force_login(subteams.admin)
    assert client.get(settings_url(subteams.full)).status_code == 404
    assert client.get(settings_url(subteams.other_integration)).status_code == 404


def test_subteam_admin_saves_own(subteams, client):
    client.force_login(subteams.admin)
    integration = subteams.own_integration
    client.post(settings_url(integration), post_data(integration, auto_sync=False))
    integration.refresh_from_db()
    assert integration.auto_sync is False


def test_subteam_admin_cannot_take_full_team(subteams, client):
    client.force_login(subteams.admin)
    integration = subteams.own_integration
    response = client.post(settings_url(integration),
                           post_data(integration, assignment="team"))
    integration.refresh_from_db()
    assert response.status_code == 400
    assert integration.subteam_id == subteams.own.pk


def test_member_gets_404(subteams, client):
    client.force_login(make_member(subteams.team))
    assert client.get(settings_url(subteams.full)).status_code == 404


def test_other_team_admin_gets_404(subteams, client):
    client.force_login(make_admin(make_team()))
    assert client.get(settings_url(subteams.full)).status_code == 404
    url = reverse("integrations:disconnect", args=[subteams.full.pk])
    assert client.post(url).status_code == 404


def test_anonymous_redirected_to_login(subteams, client):
    response = client.get(settings_url(subteams.full))
    assert response.status_code == 302
    assert "/login/" in response["Location"]


def test_history_in_admin_read_only(connected_team, client):
    integration = connected_team.integration
    client.post(settings_url(integration), post_data(integration, auto_sync=False))
    change = saved_changes(integration).get()
    listing = client.get(reverse("admin:integrations_settingschange_changelist"))
    detail = client.get(reverse("admin:integrations_settingschange_change", args=[change.pk]))
    assert listing.status_code == 200
    assert "auto_sync" in listing.content.decode()
    assert 'name="_save"' not in detail.content.decode()
