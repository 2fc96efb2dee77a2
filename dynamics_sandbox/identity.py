"""Microsoft sign-in stand-in: the OpenID Connect endpoints that MSAL for Python uses.

Served paths, where {tenant} is `sandbox-tenant`, the tenant GUID, `organizations` or
`common`:

    GET  /{tenant}/v2.0/.well-known/openid-configuration
    GET  /{tenant}/oauth2/v2.0/authorize   sign-in page (a form that lists the users)
    POST /{tenant}/oauth2/v2.0/authorize   form submit -> 302 to redirect_uri with a code
    POST /{tenant}/oauth2/v2.0/token       authorization_code, refresh_token and
                                           client_credentials grants

A token's audience is the resource of its scope: the scope without its last path
segment, so `https://HOST:PORT/.default` asks for `https://HOST:PORT` (an environment's
Web API) and `https://HOST:PORT/globaldisco/.default` for the discovery service. As in
Entra ID, a refresh token may be redeemed for any resource's scope.

The confidential clients are the product's app (SANDBOX_CLIENT_ID), which may use every
grant, and the app registrations of seed.APP_REGISTRATIONS, which may use the token
endpoint only. The client credentials grant needs a named tenant (`sandbox-tenant` or
the tenant GUID) and exactly one `{resource}/.default` scope, and its response carries
neither a refresh token nor an id token.

Errors use Microsoft Entra ID's shape: `error`, `error_description` starting with an
AADSTS code, and `error_codes`.
"""

import base64
import hashlib
import hmac
import html
import json
import logging
import re
import time
import uuid
from datetime import datetime, timezone
from urllib.parse import parse_qsl, urlencode, urlsplit

from . import seed
from .clients import (
    access_token_lifetimes, authenticate_client, issue_app_token, require_named_tenant,
)
from .oauth import OIDC_SCOPES, TokenError, resource_of_scopes, token_error_response
from .store import ACCESS_TOKEN, AUTHORIZATION_CODE, REFRESH_TOKEN
from .web import LOOPBACK_HOSTS, html_response, json_response, redirect

logger = logging.getLogger(__name__)

TENANT_ALIASES = {seed.TENANT_NAME, seed.TENANT_ID, "organizations", "common"}
AUTHORIZATION_CODE_LIFETIME = 600
# The form field of the sign-in page that carries the chosen user's sign-in name.
USER_FIELD = "login_hint"

_PATH = re.compile(
    r"^/(?P<tenant>[^/]+)/(?P<endpoint>v2\.0/\.well-known/openid-configuration"
    r"|oauth2/v2\.0/authorize|oauth2/v2\.0/token)$"
)
# Whitespace and control characters, which no redirect URI may contain.
_UNSAFE_URI = re.compile(r"[\x00-\x20\x7f]")
# Parameters of the authorize request that the sign-in form carries as hidden fields.
_AUTHORIZE_PARAMETERS = (
    "client_id", "response_type", "redirect_uri", "scope", "state", "nonce",
    "code_challenge", "code_challenge_method", "response_mode", "prompt", "client_info",
)


class AuthorizeError(Exception):
    """An authorize request that fails. `page` is True when redirecting is unsafe."""

    def __init__(self, error, code, description, page=False):
        super().__init__(description)
        self.error = error
        self.code = code
        self.description = description
        self.page = page


def is_identity_path(path):
    """Return True if `path` is one of the sign-in endpoints."""
    return _PATH.match(path) is not None


def _b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unsigned_part(payload):
    return _b64url(json.dumps(payload, separators=(",", ":")).encode("utf-8"))


def is_loopback_redirect_uri(uri):
    """Return True for an http(s) URI on 127.0.0.1, localhost or [::1] without fragment.

    A URI with whitespace or control characters is rejected, because urlsplit() drops
    CR, LF and tab while the Location header would carry them.
    """
    if _UNSAFE_URI.search(uri):
        return False
    try:
        parts = urlsplit(uri)
        hostname = parts.hostname
        parts.port  # Raises ValueError for a malformed port.
    except ValueError:
        return False
    return (
        parts.scheme in ("http", "https")
        and hostname in LOOPBACK_HOSTS
        and not parts.fragment
        and not parts.username
        and not parts.password
    )


class IdentityProvider:
    """Handle the sign-in endpoints for one sandbox."""

    def __init__(self, store, settings, faults=None):
        self.store = store
        self.settings = settings
        self.faults = faults

    def handle(self, request):
        """Return a Response for a sign-in path, or None if `request` is not one."""
        match = _PATH.match(request.path)
        if not match:
            return None
        tenant, endpoint = match.group("tenant"), match.group("endpoint")
        if tenant not in TENANT_ALIASES:
            return token_error_response(TokenError(
                400, "invalid_tenant", 90002,
                f"Tenant '{tenant}' not found. Use '{seed.TENANT_NAME}' or '{seed.TENANT_ID}'.",
            ))
        if endpoint.endswith("openid-configuration"):
            if request.method != "GET":
                return _method_not_allowed()
            return self.discovery(request, tenant)
        if endpoint.endswith("authorize"):
            if request.method == "GET":
                return self.authorize_page(request, tenant)
            if request.method == "POST":
                return self.authorize_submit(request)
            return _method_not_allowed()
        if request.method != "POST":
            return _method_not_allowed()
        try:
            return self.token(request, tenant)
        except TokenError as error:
            # %r keeps line breaks from the request's form fields out of the log.
            logger.warning("Token request rejected: %s %r", error.error, error.description)
            return token_error_response(error)

    # Discovery

    def issuer(self, base_url):
        return f"{base_url}/{seed.TENANT_ID}/v2.0"

    def discovery(self, request, tenant):
        # Like Entra ID, a named tenant resolves to its GUID, while `common` and
        # `organizations` keep their alias in the endpoints.
        path_tenant = tenant if tenant in ("common", "organizations") else seed.TENANT_ID
        base = request.base_url
        return json_response(200, {
            "issuer": self.issuer(base),
            "authorization_endpoint": f"{base}/{path_tenant}/oauth2/v2.0/authorize",
            "token_endpoint": f"{base}/{path_tenant}/oauth2/v2.0/token",
            "jwks_uri": f"{base}/{path_tenant}/discovery/v2.0/keys",
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["HS256"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
            "code_challenge_methods_supported": ["S256"],
            "claims_supported": [
                "sub", "iss", "aud", "exp", "iat", "nbf", "nonce", "name",
                "preferred_username", "oid", "tid", "ver",
            ],
            "tenant_region_scope": "EU",
        })

    # Authorize

    def _validate_authorize(self, parameters):
        """Check an authorize request. Return it as a dict or raise AuthorizeError."""
        client_id = parameters.get("client_id", "")
        if client_id in seed.APP_REGISTRATIONS_BY_CLIENT_ID:
            # The seeded app registrations are daemons, registered without redirect URIs.
            raise AuthorizeError(
                "invalid_request", 500113,
                f"No reply address is registered for the application '{client_id}'. It "
                "signs in with the client credentials grant only.",
                page=True,
            )
        if client_id != self.settings.client_id:
            raise AuthorizeError(
                "unauthorized_client", 700016,
                f"Application with identifier '{client_id}' was not found in the directory "
                f"'{seed.TENANT_NAME}'. The sandbox knows only the client id "
                f"'{self.settings.client_id}' (setting SANDBOX_CLIENT_ID).",
                page=True,
            )

        redirect_uri = parameters.get("redirect_uri", "")
        if not is_loopback_redirect_uri(redirect_uri):
            raise AuthorizeError(
                "invalid_request", 50011,
                f"The redirect URI '{redirect_uri}' specified in the request does not match "
                f"the redirect URIs configured for the application '{client_id}'. The sandbox "
                "accepts http or https redirect URIs on 127.0.0.1, localhost or [::1] only.",
                page=True,
            )

        if parameters.get("response_type") != "code":
            raise AuthorizeError(
                "unsupported_response_type", 700054,
                f"The response_type '{parameters.get('response_type', '')}' is not enabled "
                "for the application. Use 'code'.",
            )
        response_mode = parameters.get("response_mode", "query")
        if response_mode != "query":
            raise AuthorizeError(
                "invalid_request", 900144,
                f"The response_mode '{response_mode}' is not supported by the sandbox. "
                "Use 'query'.",
            )

        for name in ("scope", "state", "nonce", "code_challenge"):
            if not parameters.get(name):
                raise AuthorizeError(
                    "invalid_request", 900144,
                    f"The request body must contain the following parameter: '{name}'.",
                )
        if parameters.get("code_challenge_method") != "S256":
            raise AuthorizeError(
                "invalid_request", 501481,
                "The code_challenge_method "
                f"'{parameters.get('code_challenge_method', '')}' is not supported. Use 'S256'.",
            )
        if not re.fullmatch(r"[A-Za-z0-9_-]{43}", parameters["code_challenge"]):
            raise AuthorizeError(
                "invalid_request", 501491,
                "Invalid size of Code_Challenge parameter. An S256 challenge is 43 "
                "base64url characters.",
            )

        scopes = parameters["scope"].split()
        try:
            resource_of_scopes(scopes)
        except TokenError as error:
            raise AuthorizeError(error.error, error.code, error.description) from None
        return {name: parameters[name] for name in _AUTHORIZE_PARAMETERS if name in parameters}

    def _authorize_error(self, error, parameters):
        description = f"AADSTS{error.code}: {error.description}"
        if error.page:
            logger.warning("Sign-in page rejected the request: %r", description)
            return html_response(400, _page(
                "Sign-in failed", f"<p><strong>{html.escape(error.error)}</strong></p>"
                f"<p>{html.escape(description)}</p>",
            ))
        query = {"error": error.error, "error_description": description}
        if parameters.get("state"):
            query["state"] = parameters["state"]
        return redirect(_add_query(parameters["redirect_uri"], query))

    def authorize_page(self, request, tenant):
        parameters = dict(request.query_pairs())
        try:
            authorize = self._validate_authorize(parameters)
        except AuthorizeError as error:
            return self._authorize_error(error, parameters)
        hint = parameters.get("login_hint", "").lower()
        # Application users have no sign-in name and sign in with client credentials only.
        users = [user for user in self.store.records("systemuser")
                 if not user["isdisabled"] and not user.get("applicationid")]
        rows = []
        for index, user in enumerate(users):
            checked = " checked" if user["domainname"].lower() == hint or (not hint and index == 0) else ""
            rows.append(
                f'<p><label><input type="radio" name="{USER_FIELD}" '
                f'value="{html.escape(user["domainname"])}"{checked}> '
                f'{html.escape(user["fullname"])} ({html.escape(user["domainname"])})</label></p>'
            )
        hidden = "".join(
            f'<input type="hidden" name="{name}" value="{html.escape(value)}">'
            for name, value in authorize.items()
        )
        action = html.escape(f"/{tenant}/oauth2/v2.0/authorize")
        body = (
            f'<form method="post" action="{action}">{hidden}{"".join(rows)}'
            '<p><button type="submit">Sign in</button></p></form>'
        )
        return html_response(200, _page("Sign in to the Dynamics sandbox", body))

    def authorize_submit(self, request):
        parameters = request.form()
        try:
            authorize = self._validate_authorize(parameters)
        except AuthorizeError as error:
            return self._authorize_error(error, parameters)
        user = self.store.user_by_email(parameters.get(USER_FIELD, ""))
        if user is None or user["isdisabled"]:
            return self._authorize_error(AuthorizeError(
                "access_denied", 50034,
                f"The user account '{parameters.get(USER_FIELD, '')}' does not exist in the "
                f"'{seed.TENANT_NAME}' directory or is disabled.",
            ), authorize)
        code = self.store.add_grant(
            AUTHORIZATION_CODE, user["systemuserid"], authorize["client_id"],
            AUTHORIZATION_CODE_LIFETIME, authorize,
        )
        logger.info("User %s signed in for client %s", user["systemuserid"], authorize["client_id"])
        return redirect(_add_query(authorize["redirect_uri"], {
            "code": code,
            "state": authorize["state"],
            "session_state": str(uuid.uuid5(uuid.NAMESPACE_URL, code)),
        }))

    # Token

    def token(self, request, tenant):
        form = request.form()
        grant_type = form.get("grant_type", "")
        if grant_type == "client_credentials":
            require_named_tenant(tenant)
        client_id = authenticate_client(request, form, self.settings)
        if grant_type == "authorization_code":
            grant, scopes = self._redeem_code(form, client_id)
        elif grant_type == "refresh_token":
            grant, scopes = self._redeem_refresh_token(form, client_id)
        elif grant_type == "client_credentials":
            return issue_app_token(self.store, self.settings, self.faults, form, client_id)
        else:
            raise TokenError(
                400, "unsupported_grant_type", 70003,
                f"The app requested an unsupported grant type '{grant_type}'. Use "
                "'authorization_code', 'refresh_token' or 'client_credentials'.",
            )
        return self._issue_tokens(request, grant, scopes, client_id)

    def _redeem_code(self, form, client_id):
        code = form.get("code", "")
        grant = self.store.get_grant(AUTHORIZATION_CODE, code)
        if grant is None:
            raise TokenError(
                400, "invalid_grant", 9002313,
                "Invalid request. Request is malformed or invalid: the code is unknown.",
            )
        # A code is spent by its first redemption, successful or not.
        if not self.store.revoke_grant(code):
            raise TokenError(
                400, "invalid_grant", 54005, "OAuth2 Authorization code was already redeemed, "
                "please retry with a new valid code or use an existing refresh token.",
            )
        if grant["expired"]:
            raise TokenError(
                400, "invalid_grant", 70008,
                "The provided authorization code or refresh token has expired due to "
                "inactivity. Send a new interactive authorization request for this user "
                "and resource.",
            )

        if grant["client_id"] != client_id:
            raise TokenError(
                400, "invalid_grant", 70000,
                "The provided value for the 'code' parameter is not valid: it was issued "
                "to another client.",
            )
        if form.get("redirect_uri") != grant["redirect_uri"]:
            raise TokenError(
                400, "invalid_grant", 50148,
                f"The redirect_uri '{form.get('redirect_uri', '')}' does not match the "
                "redirect URI used to request the authorization code.",
            )

        verifier = form.get("code_verifier", "")
        challenge = _b64url(hashlib.sha256(verifier.encode("ascii", "replace")).digest())
        if not verifier or not hmac.compare_digest(challenge, grant["code_challenge"]):
            raise TokenError(
                400, "invalid_grant", 501481,
                "The Code_Verifier does not match the code_challenge supplied in the "
                "authorization request.",
            )

        requested = form.get("scope", "").split()
        granted = grant["scope"].split()
        scopes = requested or granted
        if set(scopes) - set(granted):
            raise TokenError(
                400, "invalid_scope", 70011,
                f"The scope '{' '.join(sorted(set(scopes) - set(granted)))}' was not part "
                "of the authorization request.",
            )
        return grant, scopes

    def _redeem_refresh_token(self, form, client_id):
        value = form.get("refresh_token", "")
        grant = self.store.get_grant(REFRESH_TOKEN, value)
        if grant is None or grant["revoked"]:
            raise TokenError(
                400, "invalid_grant", 70000,
                "The provided value for the input parameter 'refresh_token' is not valid: "
                "the token is unknown or was revoked or already used.",
            )
        if grant["expired"]:
            raise TokenError(
                400, "invalid_grant", 700082,
                "The refresh token has expired due to inactivity. The token was issued on "
                f"{datetime.fromtimestamp(grant['issued_at'], timezone.utc).isoformat()} "
                "and was inactive for too long. Sign in again.",
            )
        if grant["client_id"] != client_id:
            raise TokenError(
                400, "invalid_grant", 70000,
                "The provided value for the input parameter 'refresh_token' is not valid: it "
                "was issued to another client.",
            )
        user = self.store.get("systemuser", grant["systemuserid"])
        if user is None or user["isdisabled"]:
            raise TokenError(
                400, "invalid_grant", 50057, "The user account is disabled."
            )
        self.store.revoke_grant(value)  # Refresh tokens rotate: each one works once.
        scopes = form.get("scope", "").split() or grant["scope"].split()
        return grant, scopes

    def _issue_tokens(self, request, grant, scopes, client_id):
        resource = resource_of_scopes(scopes)
        user = self.store.get("systemuser", grant["systemuserid"])
        now = int(time.time())
        lifetime, server_lifetime = access_token_lifetimes(self.settings, self.faults)
        resource_scopes = sorted(scope for scope in scopes if scope not in OIDC_SCOPES)
        granted_scope = sorted(set(resource_scopes) | {f"{resource}/user_impersonation"})
        # The object id lets every environment find its own systemuser of the person.
        access_token = self.store.add_grant(
            ACCESS_TOKEN, user["systemuserid"], client_id, server_lifetime, {
                "audience": resource,
                "scope": " ".join(granted_scope),
                "oid": user["azureactivedirectoryobjectid"],
                "tid": seed.TENANT_ID,
            },
        )
        response = {
            "token_type": "Bearer",
            "scope": " ".join(granted_scope),
            "expires_in": lifetime,
            "ext_expires_in": lifetime,
            "access_token": access_token,
            "client_info": _b64url(json.dumps({
                "uid": user["azureactivedirectoryobjectid"], "utid": seed.TENANT_ID,
            }).encode("utf-8")),
        }

        if "offline_access" in scopes:
            response["refresh_token"] = self.store.add_grant(
                REFRESH_TOKEN, user["systemuserid"], client_id,
                self.settings.refresh_token_lifetime,
                {"scope": " ".join(scopes), "issued_at": now},
            )

        if "openid" in scopes:
            claims = {
                "aud": client_id,
                "iss": self.issuer(request.base_url),
                "iat": now,
                "nbf": now,
                "exp": now + 3600,
                "name": user["fullname"],
                "oid": user["azureactivedirectoryobjectid"],
                "preferred_username": user["domainname"],
                "sub": _b64url(hashlib.sha256(
                    f"{client_id}:{user['azureactivedirectoryobjectid']}".encode()
                ).digest()),
                "tid": seed.TENANT_ID,
                "ver": "2.0",
            }
            if grant.get("nonce"):
                claims["nonce"] = grant["nonce"]
            response["id_token"] = self._sign(claims)

        logger.info("Issued tokens to user %s for %s", user["systemuserid"], resource)
        return json_response(200, response, {"Cache-Control": "no-store", "Pragma": "no-cache"})

    def _sign(self, claims):
        """Return an HS256 JWT keyed with the client secret (MSAL does not check it)."""
        signing_input = (
            _unsigned_part({"typ": "JWT", "alg": "HS256"}) + "." + _unsigned_part(claims)
        )
        signature = hmac.new(
            self.settings.client_secret.encode(), signing_input.encode("ascii"), hashlib.sha256
        ).digest()
        return signing_input + "." + _b64url(signature)



def _add_query(uri, parameters):
    if urlsplit(uri).query:
        separator = "&"
    elif uri.endswith("?"):
        separator = ""
    else:
        separator = "?"
    return uri + separator + urlencode(parameters)


def _page(title, body):
    return (
        "<!doctype html><html><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title></head><body>"
        f"<h1>{html.escape(title)}</h1>{body}</body></html>"
    )


def _method_not_allowed():
    return json_response(405, {
        "error": "invalid_request",
        "error_description": "AADSTS900561: The endpoint only accepts POST or GET requests "
                             "as documented for it.",
    })


def parse_redirect(location):
    """Return the query parameters of a redirect URL as a dict."""
    return dict(parse_qsl(urlsplit(location).query))
