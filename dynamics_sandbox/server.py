"""Threaded HTTPS server that serves the sign-in endpoints and the Web API on loopback."""

import ipaddress
import logging
import os
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from .certs import ensure_certificate
from .faults import Faults
from .identity import IdentityProvider
from .store import Store
from .web import LOOPBACK_HOSTS, Request, Response, json_response

logger = logging.getLogger(__name__)

DEFAULT_CLIENT_ID = "00000000-0000-4000-8000-00000000c1d0"
DEFAULT_CLIENT_SECRET = "sandbox-client-secret"
# Lifetimes in seconds. Entra ID issues access tokens for 60 to 90 minutes and lets an
# unused refresh token live 90 days.
DEFAULT_TOKEN_LIFETIME = 3600
DEFAULT_REFRESH_TOKEN_LIFETIME = 90 * 24 * 3600
# Dataverse's service protection limits per user: requests per 300 s, and concurrent.
DEFAULT_RATE_LIMIT_REQUESTS = 6000
DEFAULT_RATE_LIMIT_CONCURRENT = 52
# Dataverse's limit on the combined execution time of a user's requests per 300 s.
DEFAULT_RATE_LIMIT_EXECUTION_MS = 1_200_000
MAX_BODY_BYTES = 16 * 1024 * 1024


@dataclass
class SandboxSettings:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 0
    client_id: str = DEFAULT_CLIENT_ID
    client_secret: str = DEFAULT_CLIENT_SECRET
    token_lifetime: int = DEFAULT_TOKEN_LIFETIME
    refresh_token_lifetime: int = DEFAULT_REFRESH_TOKEN_LIFETIME
    rate_limit_requests: int = DEFAULT_RATE_LIMIT_REQUESTS
    rate_limit_concurrent: int = DEFAULT_RATE_LIMIT_CONCURRENT
    rate_limit_execution_ms: int = DEFAULT_RATE_LIMIT_EXECUTION_MS
    # Latency model in milliseconds: a network round trip charged once per Web API HTTP
    # request, and a server execution time charged per operation, also per $batch part.
    latency_ms: float = 0
    operation_ms: float = 0
    # Fault injection at start: keyword arguments of faults.Faults.
    faults: dict = field(default_factory=dict)

    @classmethod
    def from_environment(cls, data_dir, host="127.0.0.1", port=0, client_id=None, client_secret=None):
        """Build settings, taking the client and lifetimes from Django or the environment.

        SANDBOX_TOKEN_LIFETIME and SANDBOX_REFRESH_TOKEN_LIFETIME (seconds) override the
        token lifetimes, and SANDBOX_RATE_LIMIT_REQUESTS, SANDBOX_RATE_LIMIT_CONCURRENT and
        SANDBOX_RATE_LIMIT_EXECUTION_MS the service protection limits. SANDBOX_LATENCY_MS
        and SANDBOX_OPERATION_MS (milliseconds, default 0) set the latency model.
        SANDBOX_FAULT_ERROR_RATE and SANDBOX_FAULT_DROP_RATE (0 to 1),
        SANDBOX_FAULT_THROTTLE_BURST (requests), SANDBOX_FAULT_RETRY_AFTER and
        SANDBOX_FAULT_ACCESS_TOKEN_LIFETIME (seconds) and SANDBOX_FAULT_SEED turn on
        fault injection (see faults.py).
        """
        django_id, django_secret = _django_client()
        return cls(
            data_dir=Path(data_dir),
            host=host,
            port=port,
            client_id=client_id or django_id or DEFAULT_CLIENT_ID,
            client_secret=client_secret or django_secret or DEFAULT_CLIENT_SECRET,
            token_lifetime=_int_environment("SANDBOX_TOKEN_LIFETIME", DEFAULT_TOKEN_LIFETIME),
            refresh_token_lifetime=_int_environment(
                "SANDBOX_REFRESH_TOKEN_LIFETIME", DEFAULT_REFRESH_TOKEN_LIFETIME
            ),
            rate_limit_requests=_int_environment(
                "SANDBOX_RATE_LIMIT_REQUESTS", DEFAULT_RATE_LIMIT_REQUESTS
            ),
            rate_limit_concurrent=_int_environment(
                "SANDBOX_RATE_LIMIT_CONCURRENT", DEFAULT_RATE_LIMIT_CONCURRENT
            ),
            rate_limit_execution_ms=_int_environment(
                "SANDBOX_RATE_LIMIT_EXECUTION_MS", DEFAULT_RATE_LIMIT_EXECUTION_MS
            ),
            latency_ms=_number_environment("SANDBOX_LATENCY_MS", 0),
            operation_ms=_number_environment("SANDBOX_OPERATION_MS", 0),
            faults=_fault_environment(),
        )


def _fault_environment():
    """Return the fault settings that SANDBOX_FAULT_* variables set."""
    faults = {}
    for name in ("error_rate", "drop_rate"):
        value = _number_environment(f"SANDBOX_FAULT_{name.upper()}", None, maximum=1)
        if value is not None:
            faults[name] = value
    for name in ("throttle_burst", "retry_after", "access_token_lifetime", "seed"):
        value = _number_environment(f"SANDBOX_FAULT_{name.upper()}", None)
        if value is not None:
            if value != int(value):
                raise ValueError(f"SANDBOX_FAULT_{name.upper()} must be a whole number, not {value}.")
            faults[name] = int(value)
    return faults


def _int_environment(name, default):
    value = os.environ.get(name, "")
    if not value:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"{name} must be a whole number, not {value!r}.") from None
    if number < 1:
        raise ValueError(f"{name} must be at least 1, not {number}.")
    return number


def _number_environment(name, default, maximum=None):
    """Read a number of at least 0 (and at most `maximum`) from the environment."""
    value = os.environ.get(name, "")
    if not value:
        return default
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{name} must be a number, not {value!r}.") from None
    if not 0 <= number <= (maximum if maximum is not None else float("inf")):
        bounds = f"from 0 to {maximum}" if maximum is not None else "at least 0"
        raise ValueError(f"{name} must be {bounds}, not {number}.")
    return number


def _django_client():
    try:
        from django.conf import settings
    except ImportError:
        return None, None
    if not settings.configured:
        return None, None
    return (
        getattr(settings, "SANDBOX_CLIENT_ID", None),
        getattr(settings, "SANDBOX_CLIENT_SECRET", None),
    )


def check_loopback(host):
    """Raise ValueError unless `host` is a loopback name or address."""
    if host == "localhost":
        return
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    raise ValueError(
        f"The sandbox listens on loopback only (127.0.0.1, ::1 or localhost), not {host!r}."
    )


class SandboxApp:
    """Route a request to the sign-in endpoints or the Web API and log it."""

    def __init__(self, store, settings, faults=None):
        from .webapi import WebApi

        self.store = store
        self.settings = settings
        self.faults = faults or Faults(**settings.faults)
        self.identity = IdentityProvider(store, settings, self.faults)
        self.web_api = WebApi(store, settings, self.faults)

    def __call__(self, request):
        started = time.monotonic()
        try:
            response = self.identity.handle(request) or self.web_api.handle(request)
            if response is None:
                response = json_response(404, {"error": {
                    "code": "0x8006088a",
                    "message": f"Resource not found for the segment '{request.path}'.",
                }})
        except Exception:
            logger.exception("Request %s %s failed", request.method, request.path)
            response = json_response(500, {"error": {
                "code": "0x80040216", "message": "An unexpected error occurred in the sandbox.",
            }})
        duration_ms = (time.monotonic() - started) * 1000
        self.store.log_request(
            request.method, request.path, request.query, response.status,
            request.user_id, round(duration_ms, 3), request.operations,
        )
        return response


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "DynamicsSandbox/1.0"
    # Seconds a connection may stay idle (or stall in the TLS handshake) before the
    # server closes it and frees its thread.
    timeout = 300

    def _serve(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self._send(json_response(413, {"error": {
                "code": "0x0", "message": f"The request body is larger than {MAX_BODY_BYTES} bytes.",
            }}))
            return
        body = self.rfile.read(length) if length else b""
        path, _, query = self.path.partition("?")
        request = Request(
            method=self.command,
            path=path,
            query=query,
            headers={name.lower(): value for name, value in self.headers.items()},
            body=body,
            base_url=self._base_url(),
        )
        self._send(self.server.app(request))

    def _base_url(self):
        """Return https://HOST:PORT as the client addressed it (loopback names only)."""
        port = self.server.server_address[1]
        host_header = self.headers.get("Host", "")
        if host_header.startswith("["):
            host = host_header.split("]")[0] + "]"
        else:
            host = host_header.split(":")[0]
        if host not in LOOPBACK_HOSTS:
            host = self.server.public_host
        return f"https://{host}:{port}"

    def _send(self, response: Response):
        if response.drop_connection:
            # Injected fault: the request ran, but the client gets no response.
            self.close_connection = True
            return
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _serve

    def log_message(self, format, *args):
        logger.debug("%s " + format, self.address_string(), *args)


class SandboxServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, settings: SandboxSettings):
        check_loopback(settings.host)
        self.address_family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
        if settings.host == "localhost":
            settings.host = "127.0.0.1"
        super().__init__((settings.host, settings.port), _Handler)
        settings.port = self.server_address[1]
        self.settings = settings
        self.public_host = f"[{settings.host}]" if ":" in settings.host else settings.host

        ca_path, cert_path, key_path = ensure_certificate(settings.data_dir)
        self.ca_bundle = ca_path
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(cert_path, key_path)
        # The handshake runs on the first read in the request thread, so a client that
        # stalls during it cannot block the accept loop.
        self.socket = context.wrap_socket(
            self.socket, server_side=True, do_handshake_on_connect=False
        )

        self.store = Store(settings.data_dir, cache=True)
        self.faults = Faults(**settings.faults)
        self.app = SandboxApp(self.store, settings, self.faults)

    @property
    def base_url(self):
        return f"https://{self.public_host}:{self.settings.port}"

    def get_request(self):
        connection, address = super().get_request()
        # The handler writes headers and body separately. Without TCP_NODELAY, Nagle's
        # algorithm and the client's delayed ACK add about 40 ms to every response,
        # which would distort the latency model.
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return connection, address

    def handle_error(self, request, client_address):
        logger.warning("Connection from %s failed", client_address, exc_info=True)

    def server_close(self):
        super().server_close()
        self.store.close()


def serve_in_thread(server):
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.1},
        name="dynamics-sandbox", daemon=True,
    )
    thread.start()
    return thread
