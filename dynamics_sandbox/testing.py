"""Helpers to run the sandbox from tests and scripts, and to sign in like a person.

    running = start_sandbox(tmp_path)            # server thread in this process
    running.base_url, running.authority, running.ca_bundle, running.store
    running.faults.update(error_rate=0.2)        # fault injection, see faults.py
    running.stop()

The sandbox serves two environments with separate records. Contoso Sales
(`contososales`) is at `base_url`, where `store` keeps its records, and Contoso Events
(`contosoevents`) at a port of its own, the main port + 1 when the main port is fixed:

    events = running.environment("contosoevents")
    events.url, events.store, events.environment_id, events.name
    running.discovery_url      # {base_url}/globaldisco, the Global Discovery Service

Sign-in stays at `authority` for every environment. A token is valid only at the
environment (or discovery service) whose resource its scope named, such as
`{events.url}/.default`, and a refresh token may be redeemed for any of them. Fault
injection and the latency model apply to every environment.

    process, base_url = start_sandbox_process(tmp_path)   # `manage.py dynamics_sandbox`

    location = sign_in_with_form(authorize_url, "sam.sales@contoso.example", ca_bundle)

The sign-in page is a form that posts the authorize request back as hidden fields plus
one radio button per user, named `login_hint` (USER_FIELD) with the user's sign-in
name as its value.
"""

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin

import requests

from .discovery import DISCOVERY_PATH
from .environments import SandboxEnvironment
from .faults import Faults
from .identity import USER_FIELD
from .seed import TENANT_NAME
from .server import SandboxServer, SandboxSettings, serve_in_thread
from .store import Store

READY_LINE = re.compile(r"Dynamics sandbox listening on (https://\S+)")
MANAGE_PY = Path(__file__).resolve().parent.parent / "manage.py"
# Seconds to wait for the sign-in page and form post.
SIGN_IN_TIMEOUT = 10

__all__ = [
    "USER_FIELD",
    "RunningSandbox",
    "SandboxEnvironment",
    "sign_in_with_form",
    "start_sandbox",
    "start_sandbox_process",
]


@dataclass
class RunningSandbox:
    """A sandbox server running in a background thread of this process."""

    base_url: str
    authority: str
    ca_bundle: str
    store: Store
    client_id: str
    client_secret: str
    # Fault injection settings, changeable while the server runs (see faults.py).
    faults: Faults
    _server: SandboxServer = field(repr=False)
    # Every environment that the sandbox serves, Contoso Sales first.
    environments: list[SandboxEnvironment] = field(default_factory=list)

    @property
    def discovery_url(self):
        """Return the Global Discovery Service's URL, which is also its token resource."""
        return f"{self.base_url}{DISCOVERY_PATH}"

    def environment(self, unique_name):
        """Return the SandboxEnvironment with this UniqueName, or raise KeyError."""
        for environment in self.environments:
            if environment.unique_name == unique_name:
                return environment
        names = ", ".join(environment.unique_name for environment in self.environments)
        raise KeyError(f"Unknown environment {unique_name!r}. Use one of: {names}.")

    def stop(self):
        """Stop serving and close the server socket and the store."""
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.stop()


def start_sandbox(data_dir, host="127.0.0.1", port=0, *, client_id=None, client_secret=None,
                  token_lifetime=None, rate_limit_requests=None, rate_limit_concurrent=None,
                  rate_limit_execution_ms=None, latency_ms=None, operation_ms=None,
                  fault_error_rate=None, fault_drop_rate=None, fault_throttle_burst=None,
                  fault_retry_after=None, fault_access_token_lifetime=None,
                  fault_seed=None) -> RunningSandbox:
    """Start a sandbox on `host`:`port` (0 picks a free port) in a background thread.

    The client id and secret default to SANDBOX_CLIENT_ID and SANDBOX_CLIENT_SECRET from
    Django's settings when they are configured. `token_lifetime` sets the access token
    lifetime in seconds. The service protection limits per user are
    `rate_limit_requests` (requests per 300 s), `rate_limit_execution_ms` (combined
    execution time per 300 s) and `rate_limit_concurrent`. The latency model charges
    `latency_ms` per Web API HTTP request and `operation_ms` per operation, also per
    $batch part. The fault_* arguments set the matching faults.Faults settings at
    start, and `running.faults` changes them later. Arguments left as None keep the
    SANDBOX_* environment values or the defaults.
    """
    settings = SandboxSettings.from_environment(
        data_dir, host=host, port=port, client_id=client_id, client_secret=client_secret
    )
    overrides = {
        "token_lifetime": token_lifetime,
        "rate_limit_requests": rate_limit_requests,
        "rate_limit_concurrent": rate_limit_concurrent,
        "rate_limit_execution_ms": rate_limit_execution_ms,
        "latency_ms": latency_ms,
        "operation_ms": operation_ms,
    }
    for name, value in overrides.items():
        if value is not None:
            setattr(settings, name, value)
    faults = {
        "error_rate": fault_error_rate,
        "drop_rate": fault_drop_rate,
        "throttle_burst": fault_throttle_burst,
        "retry_after": fault_retry_after,
        "access_token_lifetime": fault_access_token_lifetime,
        "seed": fault_seed,
    }
    settings.faults.update({name: value for name, value in faults.items() if value is not None})
    server = SandboxServer(settings)
    serve_in_thread(server)
    return RunningSandbox(
        base_url=server.base_url,
        authority=f"{server.base_url}/{TENANT_NAME}",
        ca_bundle=str(server.ca_bundle),
        store=server.store,
        client_id=settings.client_id,
        client_secret=settings.client_secret,
        faults=server.faults,
        _server=server,
        environments=list(server.environments),
    )


def start_sandbox_process(data_dir, port=0, env=None, timeout=60):
    """Run `manage.py dynamics_sandbox` as a child process and wait for its ready line.

    Return (Popen, base_url), where base_url is Contoso Sales' URL; the lines after the
    ready line name the other environments' URLs. `env` replaces the child's
    environment when given. The caller stops the process (terminate() and wait()).
    Raise RuntimeError if the process exits or prints no ready line within `timeout`
    seconds.
    """
    command = [
        sys.executable, str(MANAGE_PY), "dynamics_sandbox",
        "--port", str(port), "--data-dir", str(data_dir),
    ]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env if env is not None else os.environ.copy(),
        cwd=str(MANAGE_PY.parent),
    )
    deadline = time.monotonic() + timeout
    output = []
    # readline() blocks, so the deadline is checked between lines only.
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        output.append(line)
        match = READY_LINE.search(line)
        if match:
            return process, match.group(1)
    process.kill()
    process.wait()
    raise RuntimeError(
        "The sandbox process did not print its ready line. Output:\n" + "".join(output)
    )


class _FormParser(HTMLParser):
    """Collect the form action, hidden fields and the user choices of the sign-in page."""

    def __init__(self):
        super().__init__()
        self.action = None
        self.hidden = {}
        self.users = []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "form":
            self.action = attributes.get("action")
        elif tag == "input":
            if attributes.get("type") == "hidden":
                self.hidden[attributes.get("name")] = attributes.get("value", "")
            elif attributes.get("name") == USER_FIELD:
                self.users.append(attributes.get("value", ""))


def sign_in_with_form(authorize_url, user_email, ca_bundle) -> str:
    """Open the sign-in page, choose the user with `user_email` and submit the form.

    Return the Location of the redirect to the client's redirect_uri (with `code` and
    `state`, or `error`) without following it. Raise AssertionError if the page or the
    form post returns an unexpected status or form.
    """
    with requests.Session() as session:
        session.trust_env = False
        session.verify = ca_bundle
        page = session.get(authorize_url, allow_redirects=False, timeout=SIGN_IN_TIMEOUT)
        if page.status_code == 302:
            return page.headers["Location"]
        if page.status_code != 200:
            raise AssertionError(f"The sign-in page returned status {page.status_code}: {page.text}")
        parser = _FormParser()
        parser.feed(page.text)
        matching = [user for user in parser.users if user.lower() == user_email.lower()]
        if parser.action is None or not matching:
            raise AssertionError(
                f"The sign-in page offers no user {user_email!r}. Users: {parser.users}"
            )
        form = dict(parser.hidden)
        form[USER_FIELD] = matching[0]
        response = session.post(
            urljoin(authorize_url, parser.action), data=form,
            allow_redirects=False, timeout=SIGN_IN_TIMEOUT,
        )
        if response.status_code != 302:
            raise AssertionError(
                f"The sign-in form returned status {response.status_code}: {response.text}"
            )
        return response.headers["Location"]
