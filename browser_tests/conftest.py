"""Fixtures that drive the product in headless Chromium against a live server.

Every test runs Django's live server on 127.0.0.1 and the Dynamics sandbox over HTTPS on
127.0.0.1, and opens both in Debian's Chromium through Playwright. The browser is kept
to loopback: its host resolver fails for every other host, and a route guard aborts each
request to another host and fails the test.
"""

import os
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect, sync_playwright
from pytest_django.live_server_helper import LiveServer

from dynamics_sandbox.testing import start_sandbox
from integrations.tests.task_queue import run_queued_tasks  # noqa: F401 (used by tests)
from teams.tests.factories import PASSWORD, make_admin, make_member, make_team, make_user

# Debian's package installs this wrapper; a browser downloaded by `playwright install`
# is never used.
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-proxy-server",
    # Every host but 127.0.0.1 resolves to nothing, names and other addresses alike.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]
LOOPBACK_HOST = "127.0.0.1"
# Playwright timeouts, in milliseconds, for each action and each navigation.
ACTION_TIMEOUT_MS = 10_000
NAVIGATION_TIMEOUT_MS = 20_000

# The sandbox's seeded Dynamics users, as its sign-in page lists them.
SANDBOX_ADMIN_NAME = "Alex Admin"
SANDBOX_ADMIN_EMAIL = "alex.admin@contoso.example"


def pytest_collection_modifyitems(items):
    browser_dir = Path(__file__).parent
    for item in items:
        if browser_dir in Path(item.fspath).parents:
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def live_server():
    """Django's live server on 127.0.0.1, the address the browser and redirects use."""
    server = LiveServer(LOOPBACK_HOST)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory):
    running = start_sandbox(tmp_path_factory.mktemp("browser-sandbox"))
    yield running
    running.stop()


@pytest.fixture
def dynamics_settings(settings, sandbox, live_server):
    """Point the product at the sandbox, with the sign-in returning to the live server."""
    settings.DYNAMICS_AUTHORITY = f"{sandbox.base_url}/organizations"
    settings.DYNAMICS_ORG_URL = sandbox.base_url
    settings.DYNAMICS_DISCOVERY_URL = sandbox.discovery_url
    settings.DYNAMICS_CA_BUNDLE = str(sandbox.ca_bundle)
    settings.DYNAMICS_REDIRECT_URI = f"{live_server.url}/integrations/callback/"
    return settings


@pytest.fixture(scope="package")
def browser():
    """Headless Debian Chromium, started once for the browser tests.

    Playwright's sync API keeps an asyncio loop running in this thread while it is
    started, and Django refuses ORM calls from a thread with a running loop. The tests
    call the ORM only between browser steps, never concurrently with them, so
    DJANGO_ALLOW_ASYNC_UNSAFE is set for as long as Playwright runs and no longer.
    """
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing. The browser tests need Debian's Chromium: run "
            "`apt-get install chromium` as root (.ci/run installs it in CI).",
            pytrace=False,
        )
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    playwright = sync_playwright().start()
    try:
        # Playwright gives each launch a new empty profile directory and removes it at
        # close.
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS, headless=True,
            timeout=60_000,
        )
        yield chromium
        chromium.close()
    finally:
        playwright.stop()
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def page(browser, live_server, dynamics_settings):
    """A page in a fresh browser context (its own cookies), limited to loopback.

    HTTPS errors are ignored because the sandbox serves a self-signed certificate; the
    live server itself is plain http.
    """
    context = browser.new_context(
        ignore_https_errors=True, base_url=live_server.url,
        viewport={"width": 1280, "height": 900},
    )
    context.set_default_timeout(ACTION_TIMEOUT_MS)
    context.set_default_navigation_timeout(NAVIGATION_TIMEOUT_MS)
    expect.set_options(timeout=ACTION_TIMEOUT_MS)
    blocked = []

    def guard(route):
        host = urlsplit(route.request.url).hostname
        if host == LOOPBACK_HOST or route.request.url.startswith(("data:", "about:")):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort("blockedbyclient")

    context.route("**/*", guard)
    page = context.new_page()
    yield page
    context.close()
    assert not blocked, f"The browser tried to reach hosts other than loopback: {blocked}"


@dataclass
class TeamPeople:
    """A team with one admin (staff) and members, all with the password PASSWORD."""

    team: object
    admin: object
    members: list = field(default_factory=list)

    @property
    def member(self):
        return self.members[0]


def make_team_with_people(member_count=2):
    """Create a team, its admin and `member_count` members, with unique usernames."""
    tag = uuid.uuid4().hex[:6]
    team = make_team(f"Browser Team {tag}")
    admin = make_admin(team, make_user(f"admin-{tag}"))
    members = [make_member(team, make_user(f"member{number}-{tag}"))
               for number in range(1, member_count + 1)]
    return TeamPeople(team=team, admin=admin, members=members)


@pytest.fixture
def team_people(transactional_db):
    return make_team_with_people()


def log_in(page, user, next_path="/integrations/settings/"):
    """Log `user` in through the Django admin's login form, then open `next_path`."""
    page.goto(f"/admin/login/?next={next_path}")
    page.fill("#id_username", user.username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"**{next_path}")


# The settings page of all teams, or of one integration after it exists.
SETTINGS_URL = re.compile(r"/integrations/(\d+/)?settings/$")


# The page that lists the environments found through discovery.
ENVIRONMENTS_URL = re.compile(r"/integrations/\d+/environments/$")


def connect_dynamics(page, user_name=SANDBOX_ADMIN_NAME, environment="Contoso Sales"):
    """Connect the team as its admin does: Connect Dynamics, pick the user, Sign in,
    then pick the environment from the discovered ones.

    The page must show the Sync Settings page of a logged-in admin of one team. Waits
    until the browser is back on a settings page.
    """
    page.get_by_role("button", name="Connect Dynamics").click()
    page.wait_for_url(re.compile(r"^https://127\.0\.0\.1:\d+/"))
    page.get_by_label(user_name).check()
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(ENVIRONMENTS_URL)
    page.get_by_label(environment).check()
    page.get_by_role("button", name="Connect this environment").click()
    page.wait_for_url(SETTINGS_URL)


def sign_in_member(page, user):
    """Sign `user` in through the members' sign-in page, the way My leads sends them.

    The admin's login page accepts staff accounts only, so members have their own.
    """
    page.goto("/leads/mine/")
    page.wait_for_url("**/leads/login/?next=/leads/mine/")
    page.get_by_label("Username").fill(user.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/leads/mine/")
    expect(page.locator("#sign-out")).to_contain_text(f"Signed in as {user.username}")

