"""OData $batch: many Web API operations in one HTTP request.

A batch body is multipart/mixed with CRLF line endings. Each part is one request
(`application/http`) or a change set: a nested multipart whose requests succeed or fail
together. Dataverse runs the parts in order and returns a multipart response with one
HTTP response per request. A failed change set comes back as its one failed request.
"""

import itertools
import json
import uuid
from dataclasses import dataclass, field
from email.message import Message

from .odata import query_string

CRLF = "\r\n"
# Dataverse rejects batches with more requests than this.
MAX_BATCH_OPERATIONS = 1000


@dataclass
class Operation:
    """One request inside a batch; `path` is relative to the API root, and `params` are
    query options such as {"$filter": ...}, encoded when the batch is built."""

    method: str
    path: str
    body: dict | None = None
    headers: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)


@dataclass
class OperationResult:
    """The response to one operation of a batch."""

    status: int
    headers: dict
    body: object
    content_id: str = ""

    @property
    def ok(self):
        return self.status < 400


class ChangeSet(list):
    """Operations that Dataverse applies atomically: all of them, or none."""


def operation_count(groups):
    return sum(len(group) if isinstance(group, ChangeSet) else 1 for group in groups)


def build_body(groups, api_path):
    """Return (content type, body bytes) for a batch of Operations and ChangeSets."""
    boundary = f"batch_{uuid.uuid4()}"
    lines = []
    # Content-IDs must be unique in the whole batch, not only in their change set.
    content_ids = itertools.count(1)
    for group in groups:
        lines.append(f"--{boundary}")
        if isinstance(group, ChangeSet):
            changeset = f"changeset_{uuid.uuid4()}"
            lines += [f"Content-Type: multipart/mixed; boundary={changeset}", ""]
            for operation in group:
                lines.append(f"--{changeset}")
                lines += _render_operation(operation, api_path,
                                           content_id=str(next(content_ids)))
            lines.append(f"--{changeset}--")
            lines.append("")
        else:
            lines += _render_operation(group, api_path)
    lines.append(f"--{boundary}--")
    lines.append("")
    return f"multipart/mixed; boundary={boundary}", CRLF.join(lines).encode("utf-8")


def _render_operation(operation, api_path, content_id=None):
    head = ["Content-Type: application/http", "Content-Transfer-Encoding: binary"]
    if content_id:
        head.append(f"Content-ID: {content_id}")
    head.append("")
    path = operation.path if operation.path.startswith("$") else api_path + operation.path
    encoded = query_string(operation.params)
    if encoded:
        path = f"{path}?{encoded}"
    head.append(f"{operation.method} {path} HTTP/1.1")
    headers = {"Accept": "application/json"}
    if operation.body is not None:
        headers["Content-Type"] = "application/json; type=entry"
    headers.update(operation.headers)
    head += [f"{name}: {value}" for name, value in headers.items()]
    head.append("")
    head.append(json.dumps(operation.body) if operation.body is not None else "")
    return head


def parse_response(content_type, body):
    """Return the OperationResults of a batch response, flattened in request order."""
    results = []
    for headers, content in _split(content_type, body):
        part_type = headers.get("content-type", "")
        if part_type.startswith("multipart/mixed"):
            results += [_parse_http(part_headers, part_content)
                        for part_headers, part_content in _split(part_type, content)]
        else:
            results.append(_parse_http(headers, content))
    return results


def _boundary(content_type):
    message = Message()
    message["content-type"] = content_type
    boundary = message.get_param("boundary")
    if not boundary:
        raise ValueError(f"The batch response has no multipart boundary: {content_type!r}")
    return boundary


def _split(content_type, body):
    """Yield (lower-case headers, content bytes) for each part of a multipart body."""
    delimiter = b"--" + _boundary(content_type).encode("ascii")
    for chunk in body.split(delimiter)[1:]:
        if chunk.startswith(b"--"):
            break
        chunk = chunk.lstrip(b"\r\n")
        head, _, content = _cut(chunk)
        yield _headers(head), content.rstrip(b"\r\n")


def _cut(data):
    """Split `data` at the first blank line into (head, separator, rest)."""
    for separator in (b"\r\n\r\n", b"\n\n"):
        if separator in data:
            head, rest = data.split(separator, 1)
            return head, separator, rest
    return data, b"", b""


def _headers(head):
    headers = {}
    for line in head.decode("utf-8", "replace").splitlines():
        name, _, value = line.partition(":")
        if name.strip():
            headers[name.strip().lower()] = value.strip()
    return headers


def _parse_http(part_headers, content):
    """Parse one application/http part: a status line, headers and a JSON body."""
    head, _, payload = _cut(content)
    lines = head.decode("utf-8", "replace").splitlines()
    status = int(lines[0].split()[1])
    headers = _headers("\n".join(lines[1:]).encode("utf-8"))
    payload = payload.strip()
    parsed = None
    if payload:
        try:
            parsed = json.loads(payload)
        except ValueError:
            parsed = payload.decode("utf-8", "replace")
    return OperationResult(status, headers, parsed, part_headers.get("content-id", ""))
