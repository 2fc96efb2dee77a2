"""Signing in to Microsoft Entra ID with MSAL and keeping an integration's tokens.

The admin signs in through MSAL's authorization-code flow (with PKCE, state and nonce).
The resulting MSAL token cache, which contains the refresh token, is stored
Fernet-encrypted on the Integration row. Every Dynamics request takes its access token
from that cache, and MSAL renews it silently through the refresh token when fewer than
5 minutes remain.
"""

import logging
from urllib.parse import urlparse

import msal
import requests
from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from .client import DataverseClient, DataverseSession, errors
from .concurrency import OrgRequestLimiter

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


class ConnectError(Exception):
    """Signing in to Microsoft failed. The message gives the reason and the fix."""


def resource_scopes(org_url):
    """Return the MSAL scopes for the Dataverse API of `org_url`."""
    return [org_url.rstrip("/") + "/.default"]


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
    return _fernet().encrypt(cache.serialize().encode("utf-8")).decode("ascii")


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


def build_msal_app(cache=None):
    """Return the confidential client MSAL app for the configured app registration."""
    authority = settings.DYNAMICS_AUTHORITY
    host = (urlparse(authority).hostname or "").lower()
    return msal.ConfidentialClientApplication(
        settings.DYNAMICS_CLIENT_ID,
        client_credential=settings.DYNAMICS_CLIENT_SECRET,
        authority=authority,
        instance_discovery=host in MICROSOFT_AUTHORITY_HOSTS,
        token_cache=cache,
        http_client=http_session(),
        http_cache=_msal_http_cache,
    )


def begin_sign_in(org_url, redirect_uri):
    """Start the authorization-code flow; return the flow dict to keep in the session.

    The browser goes to flow["auth_uri"]; the flow keeps state, nonce and the PKCE
    verifier that `complete_sign_in` checks.
    """
    return build_msal_app().initiate_auth_code_flow(
        scopes=resource_scopes(org_url), redirect_uri=redirect_uri, prompt="select_account"
    )


def complete_sign_in(flow, auth_response):
    """Redeem the code that the redirect brought; return (cache, account_id, token).

    Raises ConnectError with Microsoft's own error description when sign-in failed or the
    response does not belong to this flow (state mismatch).
    """
    cache = msal.SerializableTokenCache()
    app = build_msal_app(cache)
    try:
        result = app.acquire_token_by_auth_code_flow(flow, auth_response)
    except ValueError as error:
        # MSAL raises ValueError when the state does not match the flow it started.
        raise ConnectError(
            "The sign-in response did not match the sign-in this page started. "
            "Start again with Connect Dynamics."
        ) from error
    if "error" in result:
        description = result.get("error_description") or result["error"]
        raise ConnectError(f"Microsoft sign-in failed: {description}")
    accounts = app.get_accounts()
    if not accounts:
        raise ConnectError("Microsoft sign-in returned no account. Try connecting again.")
    return cache, accounts[0]["home_account_id"], result["access_token"]


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
        self._app = build_msal_app(self._cache)
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
                    f"Could not reach the Microsoft sign-in at {settings.DYNAMICS_AUTHORITY} "
                    f"({error.__class__.__name__})."
                ) from error
        result = self._acquire(force_refresh)
        if self._rejected(result) and self._reload_if_changed():
            # Another worker renewed the sign-in and stored a newer refresh token while
            # this one used the older token, which the authority may accept only once.
            result = self._acquire(force_refresh)
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
                f"Could not reach the Microsoft sign-in at {settings.DYNAMICS_AUTHORITY} to "
                f"renew the token ({error.__class__.__name__})."
            ) from error
        if self._cache.has_state_changed and result and "access_token" in result:
            self._save_cache()
        return result

    @staticmethod
    def _rejected(result):
        return result is not None and result.get("error") in _REAUTHORIZE_ERRORS

    def _reload_if_changed(self):
        """Reload the stored cache if another process replaced it; return whether it did."""
        stored = (
            type(self.integration).objects.filter(pk=self.integration.pk)
            .values_list("token_cache_encrypted", flat=True).first()
        )
        if not stored or stored == self._loaded_cache:
            return False
        self.integration.token_cache_encrypted = stored
        self._load()
        return True

    def _save_cache(self):
        encrypted = encrypt_cache(self._cache)
        self._cache.has_state_changed = False
        self._loaded_cache = encrypted
        self.integration.token_cache_encrypted = encrypted
        type(self.integration).objects.filter(pk=self.integration.pk).update(
            token_cache_encrypted=encrypted
        )


def client_for(integration, access_token=None):
    """Return a DataverseClient for the integration's org.

    With `access_token` the client uses that one token (right after sign-in); otherwise it
    draws tokens from the integration's stored cache.
    """
    if access_token is not None:
        def token_provider(force_refresh=False):
            return access_token
    else:
        token_provider = TokenProvider(integration)
    return DataverseClient(
        integration.org_url,
        token_provider,
        ca_bundle=settings.DYNAMICS_CA_BUNDLE or None,
        connect_timeout=settings.DYNAMICS_CONNECT_TIMEOUT,
        read_timeout=settings.DYNAMICS_READ_TIMEOUT,
        limiter=OrgRequestLimiter(integration.org_url),
    )
