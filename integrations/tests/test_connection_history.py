"""Connections in the settings history, and stored connections nothing else may change."""

import re

import pytest
from django.urls import reverse

from integrations import connection, settings_page
from integrations.models import Integration, SettingsChange

from .conftest import SANDBOX_READER, connect_through_sign_in

pytestmark = pytest.mark.django_db


def connection_changes(integration):
    return SettingsChange.objects.filter(integration=integration,
                                         changes__has_key="authorized_at")


def test_connect_recorded_in_history(connected_team):
    change = connection_changes(connected_team.integration).get()

    assert change.changed_by == connected_team.admin
    assert change.changes["status"]["new"] == Integration.Status.CONNECTED
    assert change.changes["integration_user_name"]["new"] == "Alex Admin"
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} UTC",
                        change.changes["connected_at"]["new"])
    assert change.changes["connected_at"]["old"] is None


def test_reauthorization_recorded_in_history(connected_team, client, sandbox):
    connect_through_sign_in(client, connected_team.team, connected_team.admin, sandbox,
                            SANDBOX_READER)

    latest = connection_changes(connected_team.integration).first()
    assert connection_changes(connected_team.integration).count() == 2
    assert "connected_at" not in latest.changes
    assert "status" not in latest.changes
    assert latest.changes["integration_user_email"]["new"] == SANDBOX_READER


def test_reconnect_after_disconnect_is_new_connection(connected_team, client, sandbox):
    first = Integration.objects.get(pk=connected_team.integration.pk)
    settings_page.disconnect(first, connected_team.admin)

    connect_through_sign_in(client, connected_team.team, connected_team.admin, sandbox)

    second = Integration.objects.get(pk=first.pk)
    assert second.status == Integration.Status.CONNECTED
    assert second.connected_at > first.connected_at
    assert second.authorized_at == second.connected_at


def test_disconnect_during_renewal_stays_disconnected(connected_team):
    integration = Integration.objects.get(pk=connected_team.integration.pk)
    provider = connection.TokenProvider(integration)
    provider()
    settings_page.disconnect(Integration.objects.get(pk=integration.pk),
                             connected_team.admin)

    provider(force_refresh=True)

    after = Integration.objects.get(pk=integration.pk)
    assert after.status == Integration.Status.DISCONNECTED
    assert after.token_cache_encrypted == ""
    assert after.msal_account_id == ""


def test_admin_cannot_change_org_url(connected_team, client):
    integration = connected_team.integration
    url = reverse("admin:integrations_integration_change", args=[integration.pk])

    page = client.get(url)

    assert page.status_code == 200
    assert 'name="org_url"' not in page.content.decode()
    assert integration.org_url in page.content.decode()
