"""Threaded HTTPS servers for the sign-in endpoints, discovery and the Web API on loopback.

SandboxServer listens on the main port and serves the sign-in endpoints, the Global
Discovery Service and the Web API of Contoso Sales. It starts, stops and closes one
EnvironmentServer per extra environment, each serving that environment's Web API on a
port of its own (see environments.py).
"""

import ipaddress
import logging
import os
import re
import socket
import ssl
import sys
import threading
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from . import environments, seed
from .certs import ensure_certificate
from .discovery import GlobalDiscovery
from .faults import Faults
from .identity import IdentityProvider, is_identity_path
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
# The largest request body that the sandbox reads, in bytes. It fits a $batch of 1000
# creates of up to 16 KB each. NOTE: Dataverse's own limit on request bodies
# is undocumented, so 16 MiB is the sandbox's choice.
MAX_BODY_BYTES = 16 * 1024 * 1024
# A Content-Length value: ASCII digits only, as RFC 9110 defines it.
_CONTENT_LENGTH = re.compile(r"[0-9]+")
# Characters that would end a response header line early.
_HEADER_BREAK = re.compile(r"[\r\n\0]")


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


def protocol_error(path, status, message):
    """Return an error response in the shape that the endpoint at `path` uses.

    Sign-in endpoints use Microsoft Entra ID's {"error", "error_description"} shape,
    everything else Dataverse's {"error": {"code", "message"}}.
    """
    if is_identity_path(path.partition("?")[0]):
        # NOTE: Entra ID's AADSTS codes for malformed HTTP requests are unconfirmed, so
        # the sandbox sends none.
        return json_response(status, {"error": "invalid_request", "error_description": message})
    return json_response(status, {"error": {"code": "0x0", "message": message}})


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
    """Route a request to the first handler that serves its path, and log it in `store`.

    Each handler has a handle(request) method that returns a Response, or None for a
    path it does not serve.
    """

    def __init__(self, store, handlers):
        self.store = store
        self.handlers = handlers

    def _dispatch(self, request):
        for handler in self.handlers:
            response = handler.handle(request)
            if response is not None:
                return response
        return None

    def __call__(self, request):
        started = time.monotonic()
        try:
            response = self._dispatch(request)
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
        body = self._read_body()
        if body is None:
            return
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

    def _read_body(self):
        """Read the body that Content-Length announces.

        Return None after rejecting the request or when the client closed the connection
        early. A rejected request's body stays unread, so the connection closes then.
        """
        if self.headers.get("Transfer-Encoding") is not None:
            self._reject(411, "The sandbox does not accept Transfer-Encoding on requests. "
                              "Send the body with a Content-Length header.")
            return None
        values = {value.strip() for value in self.headers.get_all("Content-Length") or []}
        if len(values) > 1:
            self._reject(400, f"The request has conflicting Content-Length headers: "
                              f"{', '.join(sorted(values))}. Send one.")
            return None
        value = values.pop() if values else "0"
        if not _CONTENT_LENGTH.fullmatch(value):
            self._reject(400, f"The Content-Length '{value[:40]}' is invalid. Send the "
                              "body's size in bytes as a whole number of at least 0.")
            return None
        # Comparing digit counts first keeps int() away from values with thousands of digits.
        digits = value.lstrip("0")
        if len(digits) > len(str(MAX_BODY_BYTES)) or int(digits or "0") > MAX_BODY_BYTES:
            self._reject(413, f"The request body of {value[:40]} bytes is larger than the "
                              f"limit of {MAX_BODY_BYTES} bytes.")
            return None
        length = int(digits or "0")
        body = self.rfile.read(length) if length else b""
        if len(body) < length:
            logger.info("Client %s closed the connection after %d of %d body bytes of %s %s",
                        self.client_address[0], len(body), length, self.command, self.path[:200])
            self.close_connection = True
            return None
        return body

    def _reject(self, status, message):
        """Send an error for a request that is malformed at the HTTP level, and close."""
        path = getattr(self, "path", "") or ""
        logger.warning("Rejected %s %s from %s with %d: %s", self.command or "-",
                       path[:200] or "-", self.client_address[0], status, message)
        self.close_connection = True
        response = protocol_error(path, status, message)
        response.headers["Connection"] = "close"
        self._send(response)

    def parse_request(self):
        if not super().parse_request():
            return False
        if self.request_version == "HTTP/0.9":
            # Reply with an HTTP/1.0 status line, because HTTP/0.9 responses have none.
            self.request_version = "HTTP/1.0"
            self._reject(400, "The request line has no HTTP version. Use HTTP/1.1.")
            return False
        return True

    def send_error(self, code, message=None, explain=None):
        """Send an error that http.server detected, with a JSON body instead of HTML."""
        if code == HTTPStatus.NOT_IMPLEMENTED:
            # http.server sends 501 for a method that has no do_<METHOD> handler.
            code = HTTPStatus.METHOD_NOT_ALLOWED
            message = f"The HTTP method '{self.command}' is not allowed on this resource."
        elif message is None:
            message = HTTPStatus(code).phrase
        self._reject(code, message)

    def log_error(self, format, *args):
        logger.info("%s " + format, self.address_string(), *args)

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
        unsafe = [name for name, value in response.headers.items()
                  if _HEADER_BREAK.search(f"{name}{value}")]
        if unsafe:
            # A line break would let request data add response headers, so the
            # handler that built these headers has a bug.
            logger.error("Response header %s of %s %s contains a line break; sending 500",
                         ", ".join(unsafe), self.command, self.path[:200])
            response = json_response(500, {"error": {
                "code": "0x80040216", "message": "An unexpected error occurred in the sandbox.",
            }})
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


class _HttpsServer(ThreadingHTTPServer):
    """A threaded HTTPS server on a loopback address, with the sandbox's certificate."""

    daemon_threads = True

    def __init__(self, settings: SandboxSettings, port):
        check_loopback(settings.host)
        self.address_family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
        if settings.host == "localhost":
            settings.host = "127.0.0.1"
        super().__init__((settings.host, port), _Handler)
        self.settings = settings
        self.public_host = f"[{settings.host}]" if ":" in settings.host else settings.host

        try:
            ca_path, cert_path, key_path = ensure_certificate(settings.data_dir)
            self.ca_bundle = ca_path
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            context.load_cert_chain(cert_path, key_path)
        except BaseException:
            self.socket.close()
            raise
        # The handshake runs on the first read in the request thread, so a client that
        # stalls during it cannot block the accept loop.
        self.socket = context.wrap_socket(
            self.socket, server_side=True, do_handshake_on_connect=False
        )

    @property
    def base_url(self):
        return f"https://{self.public_host}:{self.server_address[1]}"

    def get_request(self):
        connection, address = super().get_request()
        # The handler writes headers and body separately. Without TCP_NODELAY, Nagle's
        # algorithm and the client's delayed ACK add about 40 ms to every response,
        # which would distort the latency model.
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return connection, address

    def handle_error(self, request, client_address):
        error = sys.exc_info()[1]
        if isinstance(error, OSError):
            # TLS handshake failures, resets and timeouts are the client's doing, so one
            # line without a traceback is enough.
            logger.warning("Connection from %s failed: %s: %s", client_address[0],
                           type(error).__name__, error)
            return
        logger.warning("Connection from %s failed", client_address, exc_info=True)


class EnvironmentServer(_HttpsServer):
    """Serve the Web API of one extra environment, with its own store, on its own port.

    Tokens are checked against the grants of the main server's store, and 401
    responses point to the main server's sign-in endpoints.
    """

    def __init__(self, settings, port, environment_seed, grants, faults, sign_in_url):
        from .webapi import WebApi

        # socketserver calls server_close() when binding fails, before there is a store.
        self.store = None
        super().__init__(settings, port)
        try:
            self.store = environments.open_store(
                settings.data_dir, environment_seed.unique_name, cache=True
            )
        except BaseException:
            self.socket.close()
            raise
        self.environment = environments.make_environment(
            environment_seed, self.base_url, self.store
        )
        self.web_api = WebApi(
            self.store, settings, faults, organization_id=environment_seed.organization_id,
            grants=grants, port=self.server_address[1], sign_in_url=sign_in_url,
        )
        self.app = SandboxApp(self.store, [self.web_api])

    def server_close(self):
        super().server_close()
        if self.store is not None:
            self.store.close()


class SandboxServer(_HttpsServer):
    """Serve sign-in, discovery and Contoso Sales, and run the extra environments' servers.

    `environments` lists every environment, Contoso Sales first.
    """

    def __init__(self, settings: SandboxSettings):
        from .webapi import WebApi

        requested_port = settings.port
        # socketserver calls server_close() when binding fails, so these exist first.
        self.store = None
        self.environment_servers = []
        self._serving = []
        super().__init__(settings, settings.port)
        settings.port = self.server_address[1]

        self.store = environments.open_store(settings.data_dir, seed.CONTOSO_SALES, cache=True)
        self.faults = Faults(**settings.faults)
        try:
            extra_seeds = [environment for environment in seed.ENVIRONMENTS
                           if environment.unique_name != seed.CONTOSO_SALES]
            for index, environment_seed in enumerate(extra_seeds):
                self.environment_servers.append(EnvironmentServer(
                    settings, environments.extra_environment_port(requested_port, index),
                    environment_seed, self.store, self.faults, self.base_url,
                ))
        except BaseException:
            self.server_close()
            raise

        sales_seed = seed.ENVIRONMENTS_BY_UNIQUE_NAME[seed.CONTOSO_SALES]
        self.environments = [environments.make_environment(sales_seed, self.base_url, self.store)]
        self.environments += [server.environment for server in self.environment_servers]
        self.app = SandboxApp(self.store, [
            IdentityProvider(self.store, settings, self.faults),
            GlobalDiscovery(self.store, self.environments),
            WebApi(self.store, settings, self.faults, organization_id=sales_seed.organization_id),
        ])

    @property
    def base_url(self):
        return f"https://{self.public_host}:{self.settings.port}"

    def serve_forever(self, poll_interval=0.5):
        """Serve the extra environments in background threads and this server here."""
        for server in self.environment_servers:
            if server not in self._serving:
                serve_in_thread(server, poll_interval)
                self._serving.append(server)
        super().serve_forever(poll_interval)

    def shutdown(self):
        self._stop_environment_servers()
        super().shutdown()

    def _stop_environment_servers(self):
        # shutdown() waits for serve_forever to return, so it would block forever on a
        # server that never started serving.
        while self._serving:
            self._serving.pop().shutdown()

    def server_close(self):
        self._stop_environment_servers()
        for server in self.environment_servers:
            server.server_close()
        super().server_close()
        if self.store is not None:
            self.store.close()


def serve_in_thread(server, poll_interval=0.1):
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": poll_interval},
        name="dynamics-sandbox", daemon=True,
    )
    thread.start()
    return thread
