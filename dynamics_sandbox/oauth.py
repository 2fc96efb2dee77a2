"""OAuth 2.0 pieces that the sign-in endpoints share: scopes, resources and errors."""

import uuid
from datetime import datetime, timezone
from urllib.parse import urlsplit

from .web import LOOPBACK_HOSTS, json_response

# Scopes that ask for an id token or a refresh token rather than a resource.
OIDC_SCOPES = {"openid", "profile", "offline_access", "email"}


class TokenError(Exception):
    """A token request that fails, sent as Entra ID's JSON error (see token_error_response)."""

    def __init__(self, status, error, code, description):
        super().__init__(description)
        self.status = status
        self.error = error
        self.code = code
        self.description = description


def is_loopback_audience(audience, port, path=""):
    """Return whether a token's audience is https on a loopback host, `port` and `path`.

    127.0.0.1, localhost and [::1] name the same server, so a token for any of them is
    accepted.
    """
    parts = urlsplit(audience)
    try:
        audience_port = parts.port or 443
    except ValueError:
        return False
    return (
        parts.scheme == "https"
        and parts.hostname in LOOPBACK_HOSTS
        and audience_port == port
        and parts.path.rstrip("/") == path
    )


def resource_of_scopes(scopes):
    """Return the resource that the resource scopes name.

    The resource is a scope without its last path segment (the permission, such as
    `.default` or `user_impersonation`): scheme://host[:port] for
    `https://host:port/.default`, and `https://host:port/globaldisco` for
    `https://host:port/globaldisco/.default`. Raise TokenError unless exactly one
    resource is named.
    """
    resources = set()
    for scope in scopes:
        if scope in OIDC_SCOPES:
            continue
        try:
            parts = urlsplit(scope)
        except ValueError:  # For example an unclosed '[' in the host.
            parts = None
        if (parts is None or parts.scheme != "https" or not parts.netloc
                or parts.path in ("", "/") or parts.query or parts.fragment):
            raise TokenError(
                400, "invalid_scope", 70011,
                f"The provided value for the input parameter 'scope' is not valid. "
                f"The scope '{scope}' is not a resource scope such as "
                f"'https://host/.default'.",
            )
        resource_path = parts.path.rsplit("/", 1)[0]
        resources.add(f"{parts.scheme}://{parts.netloc}{resource_path}")
    if len(resources) != 1:
        raise TokenError(
            400, "invalid_scope", 28000,
            "Provide value for the input parameter scope with exactly one resource, "
            f"found {len(resources)}: {' '.join(sorted(scopes))}.",
        )
    return resources.pop()


def token_error_response(error):
    """Return a TokenError as Entra ID's JSON error response."""
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
    trace_id = str(uuid.uuid4())
    return json_response(error.status, {
        "error": error.error,
        "error_description": f"AADSTS{error.code}: {error.description} "
                             f"Trace ID: {trace_id} Timestamp: {now}",
        "error_codes": [error.code],
        "timestamp": now,
        "trace_id": trace_id,
        "correlation_id": str(uuid.uuid4()),
    }, {"Cache-Control": "no-store"})
