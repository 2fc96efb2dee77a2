"""Connecting an integration to a Dynamics environment: by a person's sign-in (an
environment URL or one picked through discovery) or as an application user.

Each way reads the Dynamics user behind the new token, stores the connection on the
Integration row, records it in the settings history and queues the leads that waited.
Views call these.
"""

import datetime
import logging

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from . import connection, environments, field_mappings, metadata
from .client import errors
from .models import Integration, SettingsChange
from .services import enqueue_waiting_leads

logger = logging.getLogger(__name__)


def get_or_create_team_integration(team):
    """Return the team's full-team integration, creating it for the configured org."""
    integration, created = Integration.objects.get_or_create(
        team=team, subteam=None, defaults={"org_url": settings.DYNAMICS_ORG_URL}
    )
    if created:
        field_mappings.create_default_mappings(integration)
    return integration


def connect_integration(integration, flow, auth_response, user, org_url=None):
    """Finish the Microsoft sign-in for one environment and store who connected.

    `org_url` is the environment the sign-in was for (entered or confirmed by the
    admin); by default the integration's own. Reads the signed-in Dynamics user
    (WhoAmI), its email and its security roles, stores the encrypted token cache and
    queues the leads that waited for a connection. Raises connection.ConnectError or a
    client error with a message for the admin.
    """
    org_url = environments.validate_environment_url(org_url or integration.org_url)
    sign_in = connection.complete_sign_in(flow, auth_response)
    return _store_connection(integration, user, org_url, sign_in.access_token, {
        "auth_mode": Integration.AuthMode.SIGNED_IN_USER,
        "tenant_id": sign_in.tenant_id,
        "msal_account_id": sign_in.account_id,
        "token_cache_encrypted": connection.encrypt_cache(sign_in.cache),
        "app_client_id": "",
        "app_client_secret_encrypted": "",
    })


def complete_discovery_sign_in(flow, auth_response):
    """Finish a sign-in for the Global Discovery Service; return (SignIn, environments).

    The environments are those the signed-in user can reach, as environments.Environment.
    Raises connection.ConnectError, or environments.DiscoveryError when listing failed.
    """
    sign_in = connection.complete_sign_in(flow, auth_response)
    found = environments.list_environments(connection.http_session(), sign_in.access_token)
    logger.info("Discovery sign-in of account %s listed %d environments",
                sign_in.account_id, len(found))
    return sign_in, found


def connect_discovered_environment(integration, user, environment, encrypted_cache,
                                   account_id):
    """Connect `integration` to an environment picked from the discovery list.

    `encrypted_cache` and `account_id` are those of the discovery sign-in: its refresh
    token is redeemed for the environment's own scope, so the admin signs in only once.
    """
    cache = connection.decrypt_cache(encrypted_cache)
    access_token = connection.token_for_environment(cache, account_id, environment.api_url,
                                                    environment.tenant_id)
    return _store_connection(integration, user, environment.api_url, access_token, {
        "auth_mode": Integration.AuthMode.SIGNED_IN_USER,
        "tenant_id": environment.tenant_id,
        "environment_name": environment.name,
        "environment_unique_name": environment.unique_name,
        "environment_id": environment.environment_id,
        "msal_account_id": account_id,
        "token_cache_encrypted": connection.encrypt_cache(cache),
        "app_client_id": "",
        "app_client_secret_encrypted": "",
    })


def connect_application_user(integration, user, *, tenant_id, client_id, client_secret,
                             org_url):
    """Connect `integration` as an application user (server-to-server).

    Gets a token through the client-credentials flow of the customer's app registration
    at `tenant_id`, then reads the application user of the environment. Raises
    connection.ConnectError when Entra ID rejects the app, and a client error when the
    environment rejects it (the app is not an application user there, say).
    """
    org_url = environments.validate_environment_url(org_url)
    # A new secret must not reuse a token that the previous one got.
    connection.forget_application_tokens(integration.pk)
    try:
        access_token = connection.application_user_token(
            integration.pk, tenant_id, client_id, client_secret, org_url)
    except errors.AuthorizationRequired as error:
        raise connection.ConnectError(error.message) from error
    except errors.TransientError as error:
        raise connection.ConnectError(f"{error.message} Try again later.") from error
    return _store_connection(integration, user, org_url, access_token, {
        "auth_mode": Integration.AuthMode.APPLICATION_USER,
        "tenant_id": tenant_id,
        "app_client_id": client_id,
        "app_client_secret_encrypted": connection.encrypt_text(client_secret),
        "msal_account_id": "",
        "token_cache_encrypted": "",
    })


# Integration fields whose change by a connection goes into the settings history.
CONNECTION_HISTORY_FIELDS = ("status", "org_url", "environment_name", "auth_mode",
                             "tenant_id", "app_client_id", "integration_user_name",
                             "integration_user_email", "connected_at", "authorized_at")


def _history_value(value):
    """Return a value as the settings history stores it: dates as readable UTC text."""
    if hasattr(value, "strftime"):
        return value.astimezone(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return value


def _record_connection_change(integration, user, before):
    """Record a connection or re-authorization in the settings history (SettingsChange)."""
    changes = {}
    for field in CONNECTION_HISTORY_FIELDS:
        old, new = before[field], getattr(integration, field)
        if old != new:
            changes[field] = {"old": _history_value(old), "new": _history_value(new)}
    SettingsChange.objects.create(integration=integration, changed_by=user, changes=changes)


def _store_connection(integration, user, org_url, access_token, credentials):
    """Read the Dynamics user behind `access_token` and store the connection.

    `credentials` are the Integration fields of the new sign-in or application user.
    A move to another environment clears the old environment's names and starts a new
    connection date. A re-authorization of the same environment keeps the connection
    date. Both replace the column metadata with the environment's current columns.
    """
    probe = Integration(pk=integration.pk, org_url=org_url)
    client = connection.client_for(probe, access_token=access_token)
    dynamics_user_id = client.who_am_i()["UserId"]
    user_row = client.user_with_roles(dynamics_user_id)
    columns = {table: metadata.fetch_columns(client, table) for table in metadata.TABLES}

    now = timezone.now()
    with transaction.atomic():
        integration = Integration.objects.select_for_update().get(pk=integration.pk)
        before = {field: getattr(integration, field) for field in CONNECTION_HISTORY_FIELDS}
        previous_url = integration.org_url.rstrip("/")
        moved = previous_url != org_url
        # A connection after a move or a Disconnect is a new connection; otherwise it
        # re-authorizes the current one and keeps its connection date.
        if moved or integration.status == Integration.Status.DISCONNECTED:
            integration.connected_at = None
        if moved:
            integration.org_url = org_url
            for field in ("environment_name", "environment_unique_name", "environment_id"):
                setattr(integration, field, "")
        for field, value in credentials.items():
            setattr(integration, field, value)
        integration.status = Integration.Status.CONNECTED
        integration.connected_by = user
        integration.dynamics_user_id = dynamics_user_id
        if integration.uses_application_user:
            # An application user has no mailbox; its name is what the page shows.
            integration.integration_user_email = ""
        else:
            integration.integration_user_email = (
                user_row.get("internalemailaddress") or user_row.get("domainname") or ""
            )
        integration.integration_user_name = user_row.get("fullname") or ""
        integration.dynamics_roles = [role["name"] for role in user_row["roles"]]
        integration.connected_at = integration.connected_at or now
        integration.authorized_at = now
        integration.last_error = ""
        integration.dynamics_metadata = columns
        integration.metadata_fetched_at = now
        integration.save()
        _record_connection_change(integration, user, before)
        queued = enqueue_waiting_leads(integration)

    if moved and before["connected_at"] is not None:
        logger.warning("Integration %s moved from environment %s to %s", integration.pk,
                       previous_url, org_url)
    logger.info(
        "Integration %s connected to %s (%s) as Dynamics user %s by user %s; %d waiting "
        "leads queued", integration.pk, org_url, integration.auth_mode,
        integration.dynamics_user_id, user.pk, queued,
    )
    return integration
