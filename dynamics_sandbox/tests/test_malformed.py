"""Malformed requests: each gets a 4xx with a Dataverse- or Entra-shaped error body.

The server responds to them without a 500 and without dropping the connection (unless
the client closed it or TLS failed), and logs each of them without a traceback.
"""

import contextlib
import json
import logging
import random
import re
import socket
import ssl
import time
from urllib.parse import quote

import pytest

from dynamics_sandbox.conftest import make_session
from dynamics_sandbox.records import MAX_JSON_DEPTH
from dynamics_sandbox.server import MAX_BODY_BYTES
from dynamics_sandbox.tests.test_batch import parts_of, request_part, send_batch

API_PATH = "/api/data/v9.2/"
TOKEN_PATH = "/sandbox-tenant/oauth2/v2.0/token"
# Seconds that a raw-socket test waits for the server.
SOCKET_TIMEOUT = 10


@pytest.fixture
def server_log(caplog):
    caplog.set_level(logging.DEBUG, logger="dynamics_sandbox")
    return caplog


def assert_no_traceback(caplog):
    records = [record for record in caplog.records if record.name.startswith("dynamics_sandbox")]
    assert records, "the server logged nothing"
    for record in records:
        assert record.exc_info is None, record.getMessage()
        assert record.levelno < logging.ERROR, record.getMessage()
        assert "\n" not in record.getMessage(), record.getMessage()


def dataverse_error(response):
    error = response.json()["error"]
    assert set(error) == {"code", "message"}
    return error


def raw_exchange(sandbox, data, shutdown=False):
    """Send `data` over TLS and return everything the server sends until it closes."""
    host, port = sandbox.base_url.removeprefix("https://").rsplit(":", 1)
    context = ssl.create_default_context(cafile=sandbox.ca_bundle)
    with socket.create_connection((host, int(port)), timeout=SOCKET_TIMEOUT) as plain:
        with context.wrap_socket(plain, server_hostname=host) as connection:
            connection.sendall(data)
            if shutdown:
                # The server closes without a TLS close_notify, so unwrap() may fail.
                with contextlib.suppress(ssl.SSLError):
                    connection.unwrap()
                return b""
            received = b""
            while chunk := connection.recv(65536):
                received += chunk
            return received


def parse_raw(received):
    """Return (status, lower-case headers, body) of one raw HTTP response."""
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split(" ")[1]), headers, body


def raw_request(sandbox, method, path, headers, body=b""):
    host = sandbox.base_url.removeprefix("https://")
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n" + "".join(
        f"{line}\r\n" for line in headers
    )
    return parse_raw(raw_exchange(sandbox, head.encode("latin-1") + b"\r\n" + body))


# Request bodies

@pytest.mark.parametrize("body", [
    b"[" * 100_000 + b"]" * 100_000,
    b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
    b'{"firstname": ' + b"[" * 900 + b"]" * 900 + b"}",
    b'{"lastname": "Lee", "description": ' + b"[" * (MAX_JSON_DEPTH) + b"]" * MAX_JSON_DEPTH + b"}",
])
def test_body_too_deep(sales_api, server_log, body):
    response = sales_api.post("leads", data=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert dataverse_error(response)["code"] == "0x0"
    assert f"more than {MAX_JSON_DEPTH} levels" in dataverse_error(response)["message"]
    assert_no_traceback(server_log)


@pytest.mark.parametrize("body, message", [
    (b'{"lastname": ' + b"1" * 5000 + b"}", "not valid JSON"),
    (b'{"lastname": "Lee", "leadsourcecode": NaN}', "'NaN' is not a JSON value"),
    (b'{"lastname": "Lee", "leadsourcecode": -Infinity}', "'-Infinity' is not a JSON value"),
    (b'{"lastname": "Lee", "lastname": "Ray"}', "'lastname' appears more than once"),
    (b'{"lastname": "\xff\xfe"}', "not UTF-8"),
    (b'{"lastname": "Lee"', "not valid JSON"),
    (b"[1, 2]", "must be a JSON object"),
    (b'"Lee"', "must be a JSON object"),
    (b"", "must be a JSON object"),
])
def test_body_invalid_json(sales_api, server_log, body, message):
    response = sales_api.post("leads", data=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert message in dataverse_error(response)["message"]
    assert_no_traceback(server_log)


def test_batch_body_too_deep(sales_api, server_log):
    # The `$` makes the batch look for Content-ID references in the body.
    part = request_part("POST", "leads", body=None, content_id="1")
    part = part.replace("HTTP/1.1\r\n", "HTTP/1.1\r\nContent-Type: application/json\r\n", 1)
    part += "[" * 100_000 + '"$1"' + "]" * 100_000
    response = send_batch(sales_api, [part])
    assert response.status_code == 400
    (failed,) = parts_of(response)
    assert failed["status"] == 400
    assert f"more than {MAX_JSON_DEPTH} levels" in failed["body"]
    assert_no_traceback(server_log)


# Content-Length and framing

@pytest.mark.parametrize("headers, status", [
    (["Content-Length: -5"], 400),
    (["Content-Length: abc"], 400),
    (["Content-Length: 1e3"], 400),
    (["Content-Length: +2"], 400),
    (["Content-Length: 2", "Content-Length: 3"], 400),
    ([f"Content-Length: {MAX_BODY_BYTES + 1}"], 413),
    (["Content-Length: " + "9" * 5000], 413),
    (["Transfer-Encoding: chunked"], 411),
])
def test_content_length_invalid(sandbox, sales_api, server_log, headers, status):
    authorization = sales_api.session.headers["Authorization"]
    status_code, response_headers, body = raw_request(
        sandbox, "POST", API_PATH + "leads",
        [f"Authorization: {authorization}", "Content-Type: application/json", *headers],
        b"{}",
    )
    assert status_code == status
    assert response_headers["connection"] == "close"
    assert set(json.loads(body)["error"]) == {"code", "message"}
    assert_no_traceback(server_log)
    assert any(record.getMessage().startswith("Rejected POST") for record in server_log.records)


def test_content_length_on_token_endpoint(sandbox, server_log):
    status, _headers, body = raw_request(
        sandbox, "POST", TOKEN_PATH,
        ["Content-Type: application/x-www-form-urlencoded", "Content-Length: -1"],
    )
    assert status == 400
    assert json.loads(body)["error"] == "invalid_request"
    assert "Content-Length '-1'" in json.loads(body)["error_description"]
    assert_no_traceback(server_log)


def test_body_shorter_than_length(sandbox, sales_api, server_log):
    authorization = sales_api.session.headers["Authorization"]
    host = sandbox.base_url.removeprefix("https://")
    head = (f"POST {API_PATH}leads HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: {authorization}\r\nContent-Type: application/json\r\n"
            "Content-Length: 100\r\n\r\n")
    raw_exchange(sandbox, head.encode("latin-1") + b'{"lastname":', shutdown=True)
    deadline = time.monotonic() + SOCKET_TIMEOUT
    while time.monotonic() < deadline:
        if any("closed the connection after 12 of 100" in record.getMessage()
               for record in server_log.records):
            break
        time.sleep(0.05)
    else:
        pytest.fail("The server logged no line about the truncated body.")
    assert_no_traceback(server_log)


# Request lines, methods and URLs

def test_request_without_version(sandbox, server_log):
    status, _headers, body = parse_raw(
        raw_exchange(sandbox, f"GET {API_PATH}leads\r\n\r\n".encode("ascii"))
    )
    assert status == 400
    assert "no HTTP version" in json.loads(body)["error"]["message"]
    assert_no_traceback(server_log)


def test_request_line_over_64kb(sales_api, server_log):
    response = sales_api.get("leads?x=" + "a" * 70_000)
    assert response.status_code == 414
    assert dataverse_error(response)["code"] == "0x0"
    assert_no_traceback(server_log)


def test_url_over_32kb(sales_api, server_log):
    response = sales_api.get("leads?$filter=" + quote("lastname eq '" + "a" * 33_000 + "'"))
    assert response.status_code == 414
    assert "longer than 32768 characters" in dataverse_error(response)["message"]
    assert_no_traceback(server_log)


@pytest.mark.parametrize("method", ["FOO", "HEAD", "OPTIONS", "TRACE"])
def test_unknown_method(sales_api, server_log, method):
    response = sales_api.request(method, "leads")
    assert response.status_code == 405
    if method != "HEAD":
        assert method in dataverse_error(response)["message"]
    assert_no_traceback(server_log)


@pytest.mark.parametrize("path, status", [
    ("leads(not-a-guid)", 400),
    ("leads('abc)", 400),
    ("leads(%zz)", 400),
    ("leads(%ff%fe)", 400),
    ("leads(00000000-0000-0000-0000-000000000000", 404),
    ("%zz", 404),
    ("leads(00000000-0000-0000-0000-000000000000)/%00", 404),
    ("EntityDefinitions(LogicalName='lead)/Attributes", 404),
])
def test_malformed_path(sales_api, server_log, path, status):
    response = sales_api.get(path)
    assert response.status_code == status
    assert dataverse_error(response)["message"]
    assert_no_traceback(server_log)


@pytest.mark.parametrize("query", [
    "$top=" + "1" * 5000,
    "$top=2147483648",
    "$top=%D9%A1",
    "$skiptoken=" + quote('<cookie pagenumber="' + "9" * 5000 + '" offset="1" />'),
    "$filter=%zz",
    "$filter=lastname%20eq%20%27a",
    "$select=%00",
])
def test_malformed_query(sales_api, server_log, query):
    response = sales_api.get("leads?" + query)
    assert response.status_code == 400
    assert dataverse_error(response)["message"]
    assert_no_traceback(server_log)


@pytest.mark.parametrize("value", ["\u00b2", "9" * 5000, "-1", "0"])
def test_maxpagesize_invalid(sales_api, server_log, value):
    response = sales_api.get("leads", headers={"Prefer": f"odata.maxpagesize={value}"})
    assert response.status_code == 400
    assert "odata.maxpagesize" in dataverse_error(response)["message"]
    assert_no_traceback(server_log)


def test_plain_http_on_tls_port(sandbox, server_log):
    host, port = sandbox.base_url.removeprefix("https://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=SOCKET_TIMEOUT) as connection:
        connection.sendall(b"GET / HTTP/1.1\r\n\r\n")
        try:
            connection.recv(1000)  # A TLS alert or nothing, then the server closes.
        except ConnectionResetError:
            pass
    deadline = time.monotonic() + SOCKET_TIMEOUT
    while time.monotonic() < deadline:
        if any("failed: SSLError" in record.getMessage() for record in server_log.records):
            break
        time.sleep(0.05)
    else:
        pytest.fail("The server logged no line about the failed TLS handshake.")
    assert_no_traceback(server_log)


# Header injection

def test_redirect_uri_with_line_break(sandbox, server_log):
    response = make_session(sandbox.ca_bundle).get(
        sandbox.authority + "/oauth2/v2.0/authorize",
        params={
            "client_id": sandbox.client_id,
            "redirect_uri": "http://127.0.0.1/callback\r\nX-Injected: 1",
            "response_type": "token",
        },
        allow_redirects=False, timeout=SOCKET_TIMEOUT,
    )
    assert response.status_code == 400
    assert "X-Injected" not in response.headers
    assert "Location" not in response.headers
    assert_no_traceback(server_log)


def test_token_error_logged_one_line(sandbox, server_log):
    response = make_session(sandbox.ca_bundle).post(
        sandbox.authority + "/oauth2/v2.0/token",
        data={"client_id": "junk\r\nInjected log line", "grant_type": "refresh_token"},
        timeout=SOCKET_TIMEOUT,
    )
    assert response.status_code == 400
    assert response.json()["error"] == "unauthorized_client"
    assert_no_traceback(server_log)


# $batch

def test_batch_binary_junk(sales_api, server_log):
    junk = random.Random(7).randbytes(4096)
    for body in (junk, b"--batch_1\r\n" + junk + b"\r\n--batch_1--\r\n"):
        response = sales_api.post(
            "$batch", data=body, headers={"Content-Type": "multipart/mixed; boundary=batch_1"}
        )
        assert response.status_code == 400
        assert dataverse_error(response)["message"]
    assert_no_traceback(server_log)


@pytest.mark.parametrize("url", ["http://[/leads", "https://[::1/api/data/v9.2/leads"])
def test_batch_invalid_url(sales_api, server_log, url):
    response = send_batch(sales_api, [request_part("GET", url)])
    assert response.status_code == 400
    assert "is not valid" in dataverse_error(response)["message"]
    assert_no_traceback(server_log)


def test_batch_header_control_character(sales_api, server_log):
    part = request_part("GET", "leads?$top=1").replace(
        "Content-Transfer-Encoding: binary",
        "Content-Transfer-Encoding: binary\r\nContent-ID: 1\rX-Injected: 1",
    )
    response = send_batch(sales_api, [part])
    assert response.status_code == 400
    assert "is not valid" in dataverse_error(response)["message"]
    assert_no_traceback(server_log)


# Sign-in endpoints

def test_token_binary_junk(sandbox, server_log):
    response = make_session(sandbox.ca_bundle).post(
        sandbox.authority + "/oauth2/v2.0/token",
        data=random.Random(11).randbytes(2048),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=SOCKET_TIMEOUT,
    )
    assert response.status_code == 400
    assert re.match(r"AADSTS\d+: ", response.json()["error_description"])
    assert_no_traceback(server_log)


def test_authorize_invalid_scope(sandbox, server_log):
    response = make_session(sandbox.ca_bundle).get(
        sandbox.authority + "/oauth2/v2.0/authorize",
        params={
            "client_id": sandbox.client_id, "redirect_uri": "http://127.0.0.1/callback",
            "response_type": "code", "scope": "https://[/.default", "state": "s", "nonce": "n",
            "code_challenge": "a" * 43, "code_challenge_method": "S256",
        },
        allow_redirects=False, timeout=SOCKET_TIMEOUT,
    )
    assert response.status_code == 302
    assert "error=invalid_scope" in response.headers["Location"]
    assert_no_traceback(server_log)
