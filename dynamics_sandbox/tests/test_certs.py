"""Certificate checks: strict X.509 verification and the loopback names."""

import socket
import ssl
import time

import pytest

from dynamics_sandbox.certs import ensure_certificate
from dynamics_sandbox.conftest import ADMIN, Api


def handshake(sandbox, server_hostname, strict=True):
    context = ssl.create_default_context(cafile=sandbox.ca_bundle)
    if strict:
        context.verify_flags |= ssl.VERIFY_X509_STRICT
    port = int(sandbox.base_url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname=server_hostname) as tls:
            return tls.version()


@pytest.mark.parametrize("name", ["127.0.0.1", "localhost"])
def test_strict_verification(sandbox, name):
    assert handshake(sandbox, name) is not None


def test_wrong_name_rejected(sandbox, caplog):
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(sandbox, "example.com")

    # The server logs the failed handshake from its own thread. Waiting for that line
    # also keeps it from arriving after the test, when pytest has closed its log capture.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not failed_connections(caplog):
        time.sleep(0.02)
    assert len(failed_connections(caplog)) == 1


def failed_connections(caplog):
    return [record for record in caplog.records
            if record.name == "dynamics_sandbox.server"
            and record.getMessage().startswith("Connection from 127.0.0.1 failed: SSLError")]


def test_certificate_reused(tmp_path):
    first = [path.read_bytes() for path in ensure_certificate(tmp_path)]
    second = [path.read_bytes() for path in ensure_certificate(tmp_path)]
    assert first == second


def test_key_private(tmp_path):
    _, _, key_path = ensure_certificate(tmp_path)
    assert key_path.stat().st_mode & 0o077 == 0


def test_stalled_handshake_not_blocking(sandbox, tokens):
    port = int(sandbox.base_url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        # This connection never starts TLS. A new client on a new connection is served.
        response = Api(sandbox, tokens[ADMIN]).get("WhoAmI", timeout=5)
    assert response.status_code == 200
