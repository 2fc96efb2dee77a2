"""Request and response objects shared by the sign-in and Web API handlers."""

import json
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote_plus

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}


@dataclass
class Request:
    method: str
    path: str
    # Raw query string, still percent-encoded.
    query: str
    headers: dict  # lower-case names
    body: bytes
    # Scheme, host and port of this server as the client addressed it.
    base_url: str
    # Set by the Web API once the bearer token checks out, for the request log.
    user_id: str | None = None
    # True for a request taken from the body of a $batch request.
    in_batch: bool = False
    # Web API operations that this HTTP request ran (one, or one per $batch part), as
    # request log entries: dicts with method, path, query, status and duration_ms.
    operations: list = field(default_factory=list)

    def header(self, name, default=None):
        return self.headers.get(name.lower(), default)

    def query_pairs(self):
        """Return the query as (name, value) pairs, where an unencoded `+` is a space."""
        pairs = []
        for part in self.query.split("&"):
            if not part:
                continue
            name, _, value = part.partition("=")
            pairs.append((unquote_plus(name), unquote_plus(value)))
        return pairs

    def form(self):
        """Return the url-encoded form body as a dict (last value wins)."""
        return dict(parse_qsl(self.body.decode("utf-8", "replace"), keep_blank_values=True))


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict = field(default_factory=dict)
    # URL of the record that a create or update wrote, for $batch references.
    entity_id: str | None = None
    # Injected fault: close the connection without sending this response.
    drop_connection: bool = False


def json_response(status, payload, headers=None, content_type="application/json; charset=utf-8"):
    response_headers = {"Content-Type": content_type}
    response_headers.update(headers or {})
    return Response(status, json.dumps(payload).encode("utf-8"), response_headers)


def html_response(status, html, headers=None):
    response_headers = {"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store"}
    response_headers.update(headers or {})
    return Response(status, html.encode("utf-8"), response_headers)


def redirect(location):
    return Response(302, b"", {"Location": location, "Cache-Control": "no-store"})
