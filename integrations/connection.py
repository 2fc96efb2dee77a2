"""Signing in to Microsoft Entra ID with MSAL and keeping an integration's tokens.

An integration connects in one of two ways:

- A signed-in user. The admin signs in through MSAL's authorization-code flow (with
  PKCE, state and nonce) at the deployment's multi-tenant authority. The resulting MSAL
  token cache, which contains the refresh token, is stored Fernet-encrypted on the
  Integration row. Because Entra ID refresh tokens are multi-resource, one sign-in for
  the Global Discovery Service also yields tokens for the environment picked from it.
- An application user. The customer's own app registration gets tokens through the
  client-credentials flow at the environment's tenant; its client secret is stored
  Fernet-encrypted, and its tokens are kept in memory only.

Every Dynamics request takes its access token from `TokenProvider`, which renews it
silently when fewer than 5 minutes remain.
"""

import hashlib
import logging
import re
import time
from dataclasses import dataclass
from urllib.parse import urlparse

import msal
import requests
from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, ValidationError

from .client import DataverseClient, DataverseSession, errors
from .concurrency import OrgRequestLimiter
from .environments import discovery_scopes, validate_environment_url

logger = logging.getLogger(__name__)

# Authority hosts where MSAL's instance discovery is meaningful. For any other host (the
# local sandbox) discovery must be off, or MSAL sends a discovery request about that host to Microsoft.
MICROSOFT_AUTHORITY_HOSTS = {
    "login.microsoftonline.com",
    "login.microsoftonline.us",
    "login.chinacloudapi.cn",
    "login.partner.microsoftonline.cn",
}

# MSAL's http_cache: keeps the authority's discovery document between app instances, so a
# sync does not fetch it again for every lead.
_msal_http_cache = {}

# MSAL error codes that mean the stored sign-in cannot work again without the admin.
_REAUTHORIZE_ERRORS = {"invalid_grant", "invalid_client", "interaction_required",
                       "unauthorized_client"}


# Explanations of an application user's failed token request, with the fix, by the
# AADSTS code in Entra ID's error_description. Other codes fall back to Entra's text.
_APP_USER_ERRORS = {
    "AADSTS7000215": "The client secret is wrong. Enter the secret's value (not its "
                     "secret ID) from the app registration's Certificates & secrets.",
    "AADSTS7000222": "The client secret has expired. Create a new client secret in the "
                     "app registration and connect again with it.",
    "AADSTS700016": "No application with this client id exists in the tenant. Check the "
                    "application (client) id and the tenant id.",
    "AADSTS90002": "The tenant was not found. Check the tenant id (a GUID or a domain "
                   "such as contoso.onmicrosoft.com).",
}

# A tenant id as Entra ID accepts it in an authority: a GUID or a verified domain name.
TENANT_ID_PATTERN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,62})(?:\.[A-Za-z0-9-]{1,63})*$")

# Client-credentials token caches by (integration, tenant, client id, secret
# fingerprint), kept in memory so a sync reuses the token of the previous one. A new
# secret or tenant gives a new key, so a stale token is never used for them.
_app_token_caches = {}


class ConnectError(Exception):
    """Signing in to Microsoft failed. The message gives the reason and the fix."""


@dataclass
class SignIn:
    """The outcome of an authorization-code sign-in."""

    cache: msal.SerializableTokenCache
    # MSAL's home_account_id, the key of the user's tokens in the cache.
    account_id: str
    access_token: str
    # The tenant that issued the tokens (the id token's tid claim); may be empty.
    tenant_id: str
    username: str


def resource_scopes(org_url):
    """Return the MSAL scopes for the Dataverse API of `org_url`."""
    return [org_url.rstrip("/") + "/.default"]


def authority_for_tenant(tenant_id):
    """Return DYNAMICS_AUTHORITY with its last path segment (organizations, or a
    tenant) replaced by `tenant_id`. An empty tenant id returns DYNAMICS_AUTHORITY."""
    if not tenant_id:
        return settings.DYNAMICS_AUTHORITY
    if not TENANT_ID_PATTERN.match(tenant_id):
        raise ValueError(f"{tenant_id!r} is not a tenant id.")
    base = settings.DYNAMICS_AUTHORITY.rstrip("/").rsplit("/", 1)[0]
    return f"{base}/{tenant_id}"


def _fernet():
    try:
        return Fernet(settings.TOKEN_CACHE_KEY)
    except (ValueError, TypeError) as error:
        raise ImproperlyConfigured(
            "TOKEN_CACHE_KEY is not a valid Fernet key (32 bytes, urlsafe base64). "
            "Generate one with: python -c \"from cryptography.fernet import Fernet; "
            "print(Fernet.generate_key().decode())\""
        ) from error


def encrypt_cache(cache):
    return encrypt_text(cache.serialize())


def encrypt_text(text):
    return _fernet().encrypt(text.encode("utf-8")).decode("ascii")


def decrypt_secret(encrypted):
    """Return an application user's client secret from its encrypted form."""
    try:
        return _fernet().decrypt(encrypted.encode("ascii")).decode("utf-8")
    except InvalidToken as error:
        raise errors.AuthorizationRequired(
            "The stored client secret cannot be decrypted; TOKEN_CACHE_KEY changed since "
            "it was saved. Connect the application user again."
        ) from error


def decrypt_cache(encrypted):
    """Return a SerializableTokenCache from its encrypted form ("" gives an empty cache)."""
    cache = msal.SerializableTokenCache()
    if encrypted:
        try:
            cache.deserialize(_fernet().decrypt(encrypted.encode("ascii")).decode("utf-8"))
        except InvalidToken as error:
            raise errors.AuthorizationRequired(
                "The stored Microsoft sign-in cannot be decrypted; TOKEN_CACHE_KEY changed "
                "since it was saved. Reconnect the integration."
            ) from error
    return cache


def http_session():
    """Return the session MSAL and the Dataverse client use, trusting only our CA bundle."""
    return DataverseSession(
        settings.DYNAMICS_CA_BUNDLE or None,
        (settings.DYNAMICS_CONNECT_TIMEOUT, settings.DYNAMICS_READ_TIMEOUT),
    )


def build_msal_app(cache=None, *, authority=None, client_id=None, client_secret=None):
    """Return an MSAL confidential client.

    By default it is the deployment's app registration at DYNAMICS_AUTHORITY; an
    application user passes its own client id, secret and tenant authority.
    """
    authority = authority or settings.DYNAMICS_AUTHORITY
    host = (urlparse(authority).hostname or "").lower()
    return msal.ConfidentialClientApplication(
        client_id or settings.DYNAMICS_CLIENT_ID,
        client_credential=client_secret or settings.DYNAMICS_CLIENT_SECRET,
        authority=authority,
        instance_discovery=host in MICROSOFT_AUTHORITY_HOSTS,
        token_cache=cache,
        http_client=http_session(),
        http_cache=_msal_http_cache,
    )


def begin_sign_in(org_url, redirect_uri):
    """Start the authorization-code flow for one environment; return the flow dict to
    keep in the session.

    The browser goes to flow["auth_uri"]; the flow keeps state, nonce and the PKCE
    verifier that `complete_sign_in` checks.
    """
    return _begin(resource_scopes(validate_environment_url(org_url)), redirect_uri)


def begin_discovery_sign_in(redirect_uri):
    """Start the authorization-code flow for the Global Discovery Service."""
    return _begin(discovery_scopes(), redirect_uri)


def _begin(scopes, redirect_uri):
    return build_msal_app().initiate_auth_code_flow(
        scopes=scopes, redirect_uri=redirect_uri, prompt="select_account"
    )


def complete_sign_in(flow, auth_response):
    """Redeem the code that the redirect brought; return a SignIn.

    MSAL checks that the state matches the flow and the id token's nonce matches the
    authorize request, and sends the PKCE verifier. Raises ConnectError with Microsoft's
    own error description when sign-in failed or the response does not belong to this
    flow.
    """
    cache = msal.SerializableTokenCache()
    app = build_msal_app(cache)
    try:
        result = app.acquire_token_by_auth_code_flow(flow, auth_response)
    except (ValueError, RuntimeError) as error:
        # MSAL raises ValueError when the state does not match the flow it started, and
        # RuntimeError when the id token's nonce is not the one the flow sent.
        logger.warning("Sign-in response rejected: %s", error.__class__.__name__)
        raise ConnectError(
            "The sign-in response did not match the sign-in this page started. "
            "Start again with Connect Dynamics."
        ) from error
    except requests.RequestException as error:
        raise ConnectError(
            f"Could not reach the Microsoft sign-in at {settings.DYNAMICS_AUTHORITY} "
            f"({error.__class__.__name__}). Try again later."
        ) from error
    if "error" in result:
        description = result.get("error_description") or result["error"]
        raise ConnectError(f"Microsoft sign-in failed: {description}")
    accounts = app.get_accounts()
    if not accounts:
        raise ConnectError("Microsoft sign-in returned no account. Try connecting again.")
    claims = result.get("id_token_claims") or {}
    return SignIn(cache=cache, account_id=accounts[0]["home_account_id"],
                  access_token=result["access_token"], tenant_id=claims.get("tid", ""),
                  username=accounts[0].get("username", ""))


def token_for_environment(cache, account_id, org_url, tenant_id=""):
    """Return an access token for `org_url` from the refresh token of an earlier sign-in.

    Used after the admin picks an environment from discovery: the sign-in was for the
    discovery service, and its refresh token is redeemed for the environment's scope.
    `cache` is updated in place. Raises ConnectError.
    """
    org_url = validate_environment_url(org_url)
    try:
        app = build_msal_app(cache, authority=authority_for_tenant(tenant_id))
        account = next((row for row in app.get_accounts()
                        if row["home_account_id"] == account_id), None)
        if account is None:
            raise ConnectError("The sign-in is no longer stored. Click Connect Dynamics "
                               "and sign in again.")
        result = app.acquire_token_silent_with_error(resource_scopes(org_url), account)
    except (requests.RequestException, ValueError) as error:
        raise ConnectError(f"Could not reach the Microsoft sign-in to get a token for "
                           f"{org_url} ({error.__class__.__name__}). Try again later.") from error
    if result and "access_token" in result:
        return result["access_token"]
    description = (result or {}).get("error_description") or (result or {}).get("error")
    raise ConnectError(f"Microsoft did not issue a token for {org_url}: "
                       f"{description or 'no token returned'}. Sign in again.")


def application_user_token(integration_key, tenant_id, client_id, client_secret, org_url,
                           *, force_refresh=False):
    """Return an access token for `org_url` through the client-credentials flow.

    `integration_key` separates the in-memory token caches of integrations. Raises
    errors.AuthorizationRequired when Entra ID rejects the application (wrong or expired
    secret, unknown client or tenant), with the fix in the message, and
    errors.TransientError when the sign-in cannot be reached.
    """
    authority = authority_for_tenant(tenant_id)
    fingerprint = hashlib.sha256(client_secret.encode("utf-8")).hexdigest()[:16]
    key = (integration_key, tenant_id.lower(), client_id.lower(), fingerprint)
    if force_refresh:
        _app_token_caches.pop(key, None)
    cache = _app_token_caches.setdefault(key, msal.TokenCache())
    try:
        app = build_msal_app(cache, authority=authority, client_id=client_id,
                             client_secret=client_secret)
        result = app.acquire_token_for_client(scopes=resource_scopes(org_url))
    except requests.RequestException as error:
        raise errors.TransientError(
            f"Could not reach the Microsoft sign-in at {authority} "
            f"({error.__class__.__name__})."
        ) from error
    except ValueError as error:
        # MSAL raises ValueError when the tenant's discovery document is unusable, and
        # Entra ID returns an error (AADSTS90002) there for a tenant that does not exist.
        logger.warning("Reading the sign-in configuration of tenant %s failed: %s",
                       tenant_id, error)
        raise errors.AuthorizationRequired(
            f"Microsoft has no sign-in configuration for tenant {tenant_id}. "
            f"{_APP_USER_ERRORS['AADSTS90002']}"
        ) from error
    if result and "access_token" in result:
        return result["access_token"]
    raise errors.AuthorizationRequired(application_user_error(result or {}))


def forget_application_tokens(integration_key):
    """Drop this process's cached application user tokens of one integration."""
    for key in [key for key in _app_token_caches if key[0] == integration_key]:
        _app_token_caches.pop(key, None)


def application_user_error(result):
    """Return the sentence for a failed client-credentials token request."""
    description = result.get("error_description") or ""
    code = next((code for code in _APP_USER_ERRORS if code in description), None)
    error = result.get("error", "no_token")
    if code:
        return f"Microsoft rejected the application user ({code}). {_APP_USER_ERRORS[code]}"
    first_line = description.splitlines()[0] if description else ""
    return (f"Microsoft rejected the application user ({error}). {first_line} "
            "Check the tenant id, client id and client secret.").replace("  ", " ")


# Seconds a worker whose token renewal was rejected waits for another worker's renewal.
RENEWAL_WAIT_SECONDS = 5


class TokenProvider:
    """Returns access tokens for one integration from its encrypted MSAL cache.

    MSAL renews the access token with the refresh token when needed; a renewed cache is
    written back to the row. Raises AuthorizationRequired when renewal is impossible.
    One provider serves one sync, so it loads the cache and builds the MSAL app once.
    """

    def __init__(self, integration):
        self.integration = integration
        self._cache = None
        self._loaded_cache = ""
        self._app = None
        self._account = None

    def _load(self):
        integration = self.integration
        self._loaded_cache = integration.token_cache_encrypted
        self._cache = decrypt_cache(integration.token_cache_encrypted)
        # Tokens come from the environment's tenant, which matters for a guest user of
        # that tenant. MSAL looks refresh tokens up regardless of the tenant.
        self._app = build_msal_app(self._cache,
                                   authority=authority_for_tenant(integration.tenant_id))
        self._account = next(
            (account for account in self._app.get_accounts()
             if account["home_account_id"] == integration.msal_account_id),
            None,
        )

    def __call__(self, force_refresh=False):
        if self._app is None:
            try:
                self._load()
            except (requests.RequestException, ValueError) as error:
                # Building the MSAL app reads the authority's discovery document; MSAL
                # raises ValueError when that document is unusable.
                raise errors.TransientError(
                    f"Could not reach the Microsoft sign-in at "
                    f"{authority_for_tenant(self.integration.tenant_id)} "
                    f"({error.__class__.__name__})."
                ) from error
        result = self._acquire(force_refresh)
        if self._rejected(result) and self._wait_for_newer_cache():
            # Another worker renewed the sign-in and stored a newer refresh token while
            # this one used the older token, which the authority may accept only once.
            # The stored cache also contains that worker's new access token, so this one
            # uses it rather than renewing again.
            result = self._acquire(force_refresh=False)
        if result and "access_token" in result:
            return result["access_token"]

        integration = self.integration
        error = (result or {}).get("error", "no_token")
        description = (result or {}).get("error_description", "")
        logger.warning("Token renewal failed for integration %s: %s", integration.pk, error)
        if error in _REAUTHORIZE_ERRORS or result is None:
            raise errors.AuthorizationRequired(
                f"Microsoft rejected the renewal of the sign-in ({error}). An admin must "
                f"reconnect Dynamics on the Sync Settings page. {description}".strip()
            )
        raise errors.TransientError(f"Token renewal failed ({error}): {description}")

    def _acquire(self, force_refresh):
        if self._account is None:
            raise errors.AuthorizationRequired(
                "No stored Microsoft sign-in for this integration. Connect Dynamics again."
            )
        try:
            result = self._app.acquire_token_silent_with_error(
                resource_scopes(self.integration.org_url), self._account,
                force_refresh=force_refresh,
            )
        except requests.RequestException as error:
            # MSAL lets transport errors of the token endpoint through unchanged.
            raise errors.TransientError(
                f"Could not reach the Microsoft sign-in at "
                f"{authority_for_tenant(self.integration.tenant_id)} to "
                f"renew the token ({error.__class__.__name__})."
            ) from error
        if self._cache.has_state_changed and result and "access_token" in result:
            self._save_cache()
        return result

    @staticmethod
    def _rejected(result):
        return result is not None and result.get("error") in _REAUTHORIZE_ERRORS

    def _wait_for_newer_cache(self):
        """Reload the stored cache once another process has replaced it; return whether
        it was replaced within RENEWAL_WAIT_SECONDS.

        Workers whose access token expires at the same moment all renew it. When the
        authority accepts a refresh token only once, the first renewal wins, and the others
        wait here for the winner to store its cache, which contains the new access token.
        """
        deadline = time.monotonic() + RENEWAL_WAIT_SECONDS
        while True:
            stored = (
                type(self.integration).objects.filter(pk=self.integration.pk)
                .values_list("token_cache_encrypted", flat=True).first()
            )
            if stored and stored != self._loaded_cache:
                self.integration.token_cache_encrypted = stored
                self._load()
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.2)

    def _save_cache(self):
        encrypted = encrypt_cache(self._cache)
        self._cache.has_state_changed = False
        self._loaded_cache = encrypted
        self.integration.token_cache_encrypted = encrypted
        # A Disconnect during this sync cleared the account and the cache; the renewed
        # tokens must not bring them back.
        model = type(self.integration)
        model.objects.filter(
            pk=self.integration.pk, msal_account_id=self.integration.msal_account_id,
        ).exclude(status=model.Status.DISCONNECTED).update(token_cache_encrypted=encrypted)


class ApplicationUserTokenProvider:
    """Returns access tokens for an integration in application user mode.

    The client secret is decrypted once per provider; the tokens themselves are cached
    in this process's memory and never written to the database.
    """

    def __init__(self, integration):
        self.integration = integration
        self._secret = None

    def __call__(self, force_refresh=False):
        integration = self.integration
        if not integration.app_client_secret_encrypted:
            raise errors.AuthorizationRequired(
                "No client secret is stored for the application user. Connect it again.")
        if self._secret is None:
            self._secret = decrypt_secret(integration.app_client_secret_encrypted)
        try:
            return application_user_token(
                integration.pk, integration.tenant_id, integration.app_client_id,
                self._secret, integration.org_url, force_refresh=force_refresh)
        except errors.AuthorizationRequired as error:
            logger.warning("Application user token rejected for integration %s (client %s, "
                           "tenant %s): %s", integration.pk, integration.app_client_id,
                           integration.tenant_id, error)
            raise


class _RejectedEnvironment:
    """A token provider for an environment URL that is not allowed: it raises before
    the client sends anything, so no token leaves the process."""

    def __init__(self, org_url, reason):
        self.message = (f"The environment URL {org_url} is rejected: {reason} Connect the "
                        "integration to a Dynamics 365 environment again.")

    def __call__(self, force_refresh=False):
        raise errors.AuthorizationRequired(self.message)


def client_for(integration, access_token=None):
    """Return a DataverseClient for the integration's environment.

    With `access_token` the client uses that one token (right after sign-in); otherwise it
    draws tokens from the integration's stored sign-in or application user. An org URL
    that is not a Dynamics host gets a client whose every request raises
    AuthorizationRequired before it is sent.
    """
    org_url = integration.org_url
    try:
        org_url = validate_environment_url(org_url)
    except ValidationError as error:
        logger.error("Integration %s has a rejected environment URL %s: %s", integration.pk,
                     org_url, error.messages[0])
        token_provider = _RejectedEnvironment(org_url, error.messages[0])
    else:
        if access_token is not None:
            def token_provider(force_refresh=False):
                return access_token
        elif integration.uses_application_user:
            token_provider = ApplicationUserTokenProvider(integration)
        else:
            token_provider = TokenProvider(integration)
    return DataverseClient(
        org_url,
        token_provider,
        ca_bundle=settings.DYNAMICS_CA_BUNDLE or None,
        connect_timeout=settings.DYNAMICS_CONNECT_TIMEOUT,
        read_timeout=settings.DYNAMICS_READ_TIMEOUT,
        limiter=OrgRequestLimiter(org_url),
    )
