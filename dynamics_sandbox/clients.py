"""Confidential clients of the sign-in stand-in and the client credentials grant.

The tenant's confidential clients are the product's app (SANDBOX_CLIENT_ID and
SANDBOX_CLIENT_SECRET) and the app registrations of seed.APP_REGISTRATIONS. Any of them may get an app-only token
with the client credentials grant. Whether the Web API accepts that token depends on
whether the environment has an application user for the app, as in Dataverse.
"""

import base64
import hmac
import logging

from . import seed
from .oauth import TokenError, resource_of_scopes
from .store import ACCESS_TOKEN
from .web import json_response

logger = logging.getLogger(__name__)

# Tenant aliases that stand for many tenants, so they cannot name an app-only token's tenant.
MULTI_TENANT_ALIASES = {"organizations", "common"}
DEFAULT_SCOPE_SUFFIX = "/.default"
# The systemuserid column of an app-only token's grant, which acts for no user.
NO_USER = ""


def registrations(settings):
    """Return {client id: seed.AppRegistration} of every client registered in the tenant."""
    product = seed.AppRegistration(settings.client_id, settings.client_secret, "Lead sync")
    return {**seed.APP_REGISTRATIONS_BY_CLIENT_ID, product.client_id: product}


def authenticate_client(request, form, settings):
    """Check the client id and secret of a token request and return the client id.

    The credentials come from the form (client_secret_post) or from a Basic
    Authorization header (client_secret_basic). Raise TokenError for an unknown client,
    a missing, wrong or expired secret.
    """
    client_id = form.get("client_id", "")
    client_secret = form.get("client_secret")
    authorization = request.header("Authorization", "")
    if authorization.startswith("Basic "):
        try:
            decoded = base64.b64decode(authorization[6:]).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            decoded = ""
        basic_id, _, basic_secret = decoded.partition(":")
        client_id = client_id or basic_id
        client_secret = basic_secret
    registration = registrations(settings).get(client_id)
    if registration is None:
        raise TokenError(
            400, "unauthorized_client", 700016,
            f"Application with identifier '{client_id}' was not found in the directory "
            f"'{seed.TENANT_NAME}'.",
        )
    if not client_secret:
        raise TokenError(
            401, "invalid_client", 7000218,
            "The request body must contain the following parameter: 'client_assertion' "
            "or 'client_secret'.",
        )
    if not hmac.compare_digest(client_secret.encode(), registration.client_secret.encode()):
        raise TokenError(
            401, "invalid_client", 7000215,
            "Invalid client secret provided. Ensure the secret being sent in the request "
            "is the client secret value, not the client secret ID, for a secret added to "
            f"app '{client_id}'.",
        )
    if registration.secret_expired:
        raise TokenError(
            401, "invalid_client", 7000222,
            f"The client secret keys of app '{client_id}' have expired. Create a new "
            "client secret for the app in the Microsoft Entra admin center.",
        )
    return client_id


def require_named_tenant(tenant):
    """Raise TokenError when a client credentials request uses a multi-tenant alias."""
    if tenant in MULTI_TENANT_ALIASES:
        raise TokenError(
            400, "invalid_request", 50059,
            f"No tenant-identifying information was found in the request: '{tenant}' "
            "names no single tenant. Send client credentials requests to the tenant's "
            f"endpoint, /{seed.TENANT_NAME}/ or /{seed.TENANT_ID}/.",
        )


def access_token_lifetimes(settings, faults):
    """Return (reported expires_in, seconds that the token really works)."""
    lifetime = settings.token_lifetime
    # Injected fault: the token stops working early, while expires_in stays normal.
    server_lifetime = lifetime
    if faults is not None and faults.access_token_lifetime is not None:
        server_lifetime = faults.access_token_lifetime
    return lifetime, server_lifetime


def issue_app_token(store, settings, faults, form, client_id):
    """Run the client credentials grant: return an app-only access token response.

    The scope must be exactly one `{resource}/.default`. The response has no refresh
    token and no id token, because no user signed in.
    """
    scopes = form.get("scope", "").split()
    if not scopes:
        raise TokenError(
            400, "invalid_request", 900144,
            "The request body must contain the following parameter: 'scope'.",
        )
    if len(scopes) != 1 or not scopes[0].endswith(DEFAULT_SCOPE_SUFFIX):
        raise TokenError(
            400, "invalid_scope", 1002012,
            f"The provided value for scope {' '.join(scopes)} is not valid. The client "
            "credentials grant needs exactly one scope: the resource followed by "
            f"'{DEFAULT_SCOPE_SUFFIX}', such as 'https://HOST:PORT/.default'.",
        )
    resource = resource_of_scopes(scopes)

    lifetime, server_lifetime = access_token_lifetimes(settings, faults)
    access_token = store.add_grant(
        ACCESS_TOKEN, NO_USER, client_id, server_lifetime, {
            "audience": resource,
            "scope": scopes[0],
            "appid": client_id,
            "app_only": True,
            "tid": seed.TENANT_ID,
        },
    )
    logger.info("Issued an app-only token to client %s for %s", client_id, resource)
    return json_response(200, {
        "token_type": "Bearer",
        "expires_in": lifetime,
        "ext_expires_in": lifetime,
        "access_token": access_token,
    }, {"Cache-Control": "no-store", "Pragma": "no-cache"})
