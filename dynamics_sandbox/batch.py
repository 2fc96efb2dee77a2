"""OData $batch for the Web API: multipart/mixed requests, change sets and responses.

A batch is `POST /api/data/v9.2/$batch` with `Content-Type: multipart/mixed;
boundary=batch_<id>`. Each part is either one request (`Content-Type: application/http`,
`Content-Transfer-Encoding: binary`, then a request line, headers, a blank line and a
body) or a change set (`multipart/mixed; boundary=changeset_<id>`) of such requests.

Rules, following Microsoft's "Execute batch operations using the Web API" article:

- Lines of the multipart structure end with CRLF.
- At most 1000 requests per batch, and no batch inside a batch.
- A change set is atomic: when one of its requests fails, its earlier writes roll back.
  It may not contain GET requests.
- Inside a change set, `$<Content-ID>` refers to the record that an earlier request of
  the same change set created, at the start of a URL or as an `@odata.bind` value.
- The batch runs its parts in order. By default it stops at the first failure and
  returns 400 with that one failed part. With `Prefer: odata.continue-on-error` it runs
  every part and returns 200.

NOTE: the real service's behaviour is unconfirmed in three places, so the sandbox takes
the strict reading. Each request in a change set needs a Content-ID. A request without
a body still needs the blank line after its headers. A failed change set is reported as
the one failed request, without the change set wrapper. The messages for malformed
batches, other than the documented Content-ID one, are the sandbox's own.
"""

import json
import re
import uuid
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import urlsplit

from .records import DataverseError, parse_json_body
from .web import LOOPBACK_HOSTS, Request, Response
from .webapi import API_PREFIX, BATCH_SEGMENT, error_response, parse_prefer

MAX_BATCH_REQUESTS = 1000
CRLF = b"\r\n"
_METHODS = {"GET", "POST", "PATCH", "PUT", "DELETE"}
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_REFERENCE = re.compile(r"^\$(?P<id>[^/?]+)(?P<rest>.*)$")


@dataclass
class BatchRequest:
    """One request of a batch body."""

    method: str
    url: str
    headers: dict  # lower-case names
    body: bytes
    content_id: str | None


@dataclass
class ChangeSet:
    """Requests of a batch that succeed or fail together."""

    requests: list


class _ChangeSetFailed(Exception):
    """Raised inside the change set transaction so that its writes roll back."""

    def __init__(self, batch_request, response):
        super().__init__(response.status)
        self.batch_request = batch_request
        self.response = response


def _invalid(message):
    return DataverseError(400, "0x0", message)


def _not_readable():
    # NOTE: the message is the one Dataverse returns for LF line endings. The status and
    # error code are the sandbox's choice, because the real response is unconfirmed.
    return DataverseError(400, "0x0", "Stream was not readable.")


# Parsing

def _media_type(value):
    """Return (lower-case media type, {parameter: value}) of a Content-Type value."""
    media_type, *parameters = (value or "").split(";")
    parsed = {}
    for parameter in parameters:
        name, _, parameter_value = parameter.strip().partition("=")
        parsed[name.strip().lower()] = parameter_value.strip().strip('"')
    return media_type.strip().lower(), parsed


def _boundary(content_type, prefix):
    media_type, parameters = _media_type(content_type)
    boundary = parameters.get("boundary", "")
    if media_type != "multipart/mixed" or not boundary.startswith(prefix):
        raise _invalid(
            f"The Content-Type '{content_type}' is not valid here. Use "
            f"'multipart/mixed; boundary={prefix}<unique id>'."
        )
    return boundary.encode("ascii", "replace")


def _split_multipart(body, boundary):
    """Return the parts of a multipart body (bytes after each delimiter line)."""
    delimiter = b"--" + boundary
    if re.search(rb"(?<!\r)\n" + re.escape(delimiter), body):
        raise _not_readable()
    pieces = (CRLF + body if body.startswith(delimiter) else body).split(CRLF + delimiter)
    if len(pieces) < 2:
        raise _invalid(f"The batch body contains no delimiter line '--{boundary.decode()}'.")

    parts = []
    for piece in pieces[1:]:
        if piece.startswith(b"--"):
            return parts
        piece = piece.lstrip(b" \t")
        if piece.startswith(b"\n"):
            raise _not_readable()
        if not piece.startswith(CRLF):
            raise _invalid(
                f"The delimiter line '--{boundary.decode()}' must be followed by a line break."
            )
        parts.append(piece[len(CRLF):])
    raise _invalid(f"The batch body is missing the closing delimiter '--{boundary.decode()}--'.")


def _split_head(data, part_name):
    """Split `data` at the first blank line into (header lines, rest)."""
    head, separator, rest = data.partition(CRLF + CRLF)
    if not separator:
        if b"\n\n" in data:
            raise _not_readable()
        raise _invalid(
            f"The {part_name} has no blank line (CRLF) after its headers. Every part of a batch "
            "needs one, also when it has no body."
        )
    try:
        lines = head.decode("utf-8").split("\r\n")
    except UnicodeDecodeError:
        raise _invalid(f"The headers of the {part_name} are not valid UTF-8.") from None
    if any("\n" in line for line in lines):
        raise _not_readable()
    return lines, rest


def _parse_headers(lines, part_name):
    headers = {}
    for line in lines:
        name, separator, value = line.partition(":")
        # A bare CR or other control character could end the line for another parser,
        # and Content-ID values are copied into the response.
        if not separator or not name.strip() or _CONTROL.search(line):
            raise _invalid(f"The header line '{line}' of the {part_name} is not valid.")
        headers[name.strip().lower()] = value.strip()
    return headers


def _parse_request(data, content_id):
    """Parse the application/http content of a part into a BatchRequest."""
    lines, body = _split_head(data, "request in the batch")
    request_line = lines[0].split(" ")
    if len(request_line) != 3 or request_line[2] != "HTTP/1.1":
        raise _invalid(
            f"The request line '{lines[0]}' is not valid. Use 'METHOD URL HTTP/1.1'."
        )
    method, url, _version = request_line
    if method not in _METHODS:
        raise _invalid(f"The HTTP method '{method}' is not supported in a batch.")
    try:
        path = urlsplit(url).path
    except ValueError as error:  # For example an unclosed '[' in the host.
        raise _invalid(f"The URL '{url[:200]}' in the request line is not valid: {error}.") from None
    if path.rstrip("/").endswith(BATCH_SEGMENT):
        raise _invalid("A batch request cannot contain another batch request.")
    headers = _parse_headers(lines[1:], "request in the batch")
    return BatchRequest(method, url, headers, body, content_id)


def _parse_part(data, in_change_set):
    """Parse one part of the batch or of a change set."""
    part_name = "change set part" if in_change_set else "batch part"
    lines, content = _split_head(data, part_name)
    headers = _parse_headers(lines, part_name)
    media_type, _parameters = _media_type(headers.get("content-type"))
    content_id = headers.get("content-id")

    if media_type == "multipart/mixed":
        if in_change_set:
            raise _invalid("A change set cannot contain another change set.")
        boundary = _boundary(headers["content-type"], "changeset_")
        requests = [_parse_part(part, True) for part in _split_multipart(content, boundary)]
        return ChangeSet(requests)

    if media_type != "application/http":
        raise _invalid(
            f"The {part_name} has Content-Type '{headers.get('content-type', '')}'. Use "
            "'application/http' for a request or 'multipart/mixed; boundary=changeset_<id>' "
            "for a change set."
        )
    if headers.get("content-transfer-encoding", "").lower() != "binary":
        raise _invalid(f"The {part_name} needs the header 'Content-Transfer-Encoding: binary'.")
    if in_change_set and not content_id:
        raise _invalid("Each request in a change set needs a Content-ID header.")
    batch_request = _parse_request(content, content_id)
    if in_change_set and batch_request.method == "GET":
        raise _invalid(
            "A change set cannot contain a GET request. Send GET requests as batch parts "
            "outside change sets."
        )
    return batch_request


def _references(batch_request):
    """Return the Content-IDs that a request refers to as `$<id>`, in order."""
    found = []
    match = _REFERENCE.match(batch_request.url)
    if match:
        found.append(match.group("id"))
    if b"$" in batch_request.body:
        try:
            payload = parse_json_body(batch_request.body)
        except DataverseError:
            payload = None  # The operation itself reports the invalid body.
        if isinstance(payload, dict):
            for key, value in payload.items():
                if key.endswith("@odata.bind") and isinstance(value, str):
                    match = _REFERENCE.match(value)
                    if match and not match.group("rest"):
                        found.append(match.group("id"))
    return found


def _check_content_ids(items):
    """Reject duplicate Content-IDs and references to ids not declared before them."""
    seen = set()
    for item in items:
        requests = item.requests if isinstance(item, ChangeSet) else [item]
        # A reference resolves only to an earlier request of the same change set.
        declared = set()
        for batch_request in requests:
            for content_id in _references(batch_request):
                if not isinstance(item, ChangeSet) or content_id not in declared:
                    raise _unknown_reference(content_id)
            if batch_request.content_id is not None:
                if batch_request.content_id in seen:
                    raise _invalid(
                        f"The Content-ID '{batch_request.content_id}' is used more than once "
                        "in the batch. Give each request its own Content-ID."
                    )
                seen.add(batch_request.content_id)
                declared.add(batch_request.content_id)


def parse_batch(content_type, body):
    """Parse a $batch body into a list of BatchRequest and ChangeSet items.

    Raise a 400 DataverseError for a malformed batch, before any request runs.
    """
    boundary = _boundary(content_type, "batch_")
    items = [_parse_part(part, False) for part in _split_multipart(body, boundary)]
    count = sum(len(item.requests) if isinstance(item, ChangeSet) else 1 for item in items)
    if count > MAX_BATCH_REQUESTS:
        raise _invalid(
            f"The batch contains {count} requests, more than the limit of "
            f"{MAX_BATCH_REQUESTS}. Split it into several batches."
        )
    _check_content_ids(items)
    return items


# Responses

def _render_part(response, content_id=None):
    """Return one application/http part of the batch response."""
    head = [b"Content-Type: application/http", b"Content-Transfer-Encoding: binary"]
    if content_id is not None:
        head.append(f"Content-ID: {content_id}".encode("utf-8"))
    status_line = f"HTTP/1.1 {response.status} {HTTPStatus(response.status).phrase}"
    headers = dict(response.headers)
    if response.entity_id is not None and response.status < 300:
        headers.setdefault("Location", response.entity_id)
    lines = [status_line] + [f"{name}: {value}" for name, value in headers.items()]
    return (
        CRLF.join(head) + CRLF + CRLF
        + "\r\n".join(lines).encode("utf-8") + CRLF + CRLF
        + response.body
    )


def _multipart(boundary, parts):
    delimiter = b"--" + boundary.encode("ascii")
    body = b"".join(delimiter + CRLF + part + CRLF for part in parts)
    return body + delimiter + b"--"


def _render_change_set(parts):
    boundary = f"changesetresponse_{uuid.uuid4()}"
    return (
        f"Content-Type: multipart/mixed; boundary={boundary}".encode("ascii") + CRLF + CRLF
        + _multipart(boundary, parts)
    )


def _batch_response(status, parts, headers=None):
    boundary = f"batchresponse_{uuid.uuid4()}"
    response_headers = {
        "OData-Version": "4.0",
        "Content-Type": f"multipart/mixed; boundary={boundary}",
    }
    response_headers.update(headers or {})
    return Response(status, _multipart(boundary, parts) + CRLF, response_headers)


# Running

class BatchProcessor:
    """Run $batch requests through the Web API's operation handler."""

    def __init__(self, web_api):
        self.web_api = web_api

    def handle(self, request, user):
        if request.method != "POST":
            return error_response(DataverseError(
                405, "0x0", f"The HTTP method '{request.method}' is not allowed on $batch."
            ))
        try:
            items = parse_batch(request.header("Content-Type", ""), request.body)
        except DataverseError as error:
            return error_response(error)

        preference = parse_prefer(request.header("Prefer", "")).get("odata.continue-on-error")
        continue_on_error = preference in ("", "true")
        parts = []
        for item in items:
            if isinstance(item, ChangeSet):
                part, failed = self._run_change_set(request, user, item)
            else:
                response = self._run(request, user, item, {})
                part, failed = _render_part(response, item.content_id), response.status >= 400
            if failed and not continue_on_error:
                return _batch_response(400, [part])
            parts.append(part)

        headers = {"Preference-Applied": "odata.continue-on-error"} if continue_on_error else {}
        return _batch_response(200, parts, headers)

    def _run_change_set(self, request, user, change_set):
        """Run a change set in one transaction. Return (response part, failed)."""
        entity_ids = {}
        parts = []
        try:
            with self.web_api.store.transaction():
                for batch_request in change_set.requests:
                    response = self._run(request, user, batch_request, entity_ids)
                    if response.status >= 400:
                        raise _ChangeSetFailed(batch_request, response)
                    if response.entity_id is not None:
                        entity_ids[batch_request.content_id] = response.entity_id
                    parts.append(_render_part(response, batch_request.content_id))
        except _ChangeSetFailed as failure:
            return _render_part(failure.response, failure.batch_request.content_id), True
        return _render_change_set(parts), False

    def _run(self, request, user, batch_request, entity_ids):
        """Run one request of the batch and return its Response."""
        try:
            url = _resolve_reference(batch_request.url, entity_ids)
            path, query = self._target(request, url)
            body = _resolve_body_references(batch_request.body, entity_ids)
        except DataverseError as error:
            return error_response(error)
        inner = Request(
            method=batch_request.method,
            path=path,
            query=query,
            headers=batch_request.headers,
            body=body,
            base_url=request.base_url,
            user_id=request.user_id,
            in_batch=True,
        )
        return self.web_api.run_operation(inner, user, outer=request)

    def _target(self, request, url):
        """Return (path, raw query) of a request URL inside the batch."""
        parts = urlsplit(url)  # _parse_request checked that this does not raise.
        if parts.scheme or parts.netloc:
            try:
                port = parts.port or 443
            except ValueError:
                port = None
            if (parts.scheme != "https" or parts.hostname not in LOOPBACK_HOSTS
                    or port != self.web_api.port):
                raise _invalid(
                    f"The URL '{url}' in the batch does not address this service. Use a "
                    f"path such as '{API_PREFIX}leads' or '{request.base_url}{API_PREFIX}leads'."
                )
        path = parts.path
        if not path.startswith("/"):
            path = API_PREFIX + path
        return path, parts.query


def _unknown_reference(content_id):
    return _invalid(
        f"Content-ID Reference: '${content_id}' does not exist in the batch context."
    )


def _resolve_reference(url, entity_ids):
    match = _REFERENCE.match(url)
    if match is None:
        return url
    if match.group("id") not in entity_ids:
        # The request with that Content-ID wrote no record, for example a DELETE.
        raise _unknown_reference(match.group("id"))
    return entity_ids[match.group("id")] + match.group("rest")


def _resolve_body_references(body, entity_ids):
    """Replace `$<Content-ID>` values of `@odata.bind` properties with record URLs."""
    if not entity_ids or b"$" not in body:
        return body
    try:
        payload = parse_json_body(body)
    except DataverseError:
        return body  # The operation itself reports the invalid body.
    if not isinstance(payload, dict):
        return body
    for key, value in payload.items():
        if key.endswith("@odata.bind") and isinstance(value, str):
            match = _REFERENCE.match(value)
            if match and not match.group("rest"):
                if match.group("id") not in entity_ids:
                    raise _unknown_reference(match.group("id"))
                payload[key] = entity_ids[match.group("id")]
    return json.dumps(payload).encode("utf-8")
