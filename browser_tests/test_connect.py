"""Connecting Dynamics from the Sync Settings page, through the sandbox's sign-in."""

import re

from playwright.sync_api import expect

from dynamics_sandbox import seed
from integrations.models import Integration

from .conftest import (
    ENVIRONMENTS_URL, SANDBOX_ADMIN_EMAIL, SANDBOX_ADMIN_NAME, SETTINGS_URL, log_in,
)

DATE_UTC = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC$")


def test_admin_connects_through_sign_in(page, team_people, sandbox):
    log_in(page, team_people.admin)
    expect(page.locator(".integration-user")).to_have_count(0)

    page.get_by_role("button", name="Connect Dynamics").click()
    page.wait_for_url(f"{sandbox.base_url}/**")
    expect(page.locator("h1")).to_have_text("Sign in to the Dynamics sandbox")
    page.get_by_label(SANDBOX_ADMIN_NAME).check()
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(ENVIRONMENTS_URL)
    expect(page.locator("tr.environment")).to_have_count(2)
    expect(page.locator('tr.environment[data-unique-name="contosoevents"]')).to_contain_text(
        sandbox.environment("contosoevents").url)
    page.get_by_label("Contoso Sales").check()
    page.get_by_role("button", name="Connect this environment").click()
    page.wait_for_url(SETTINGS_URL)

    expect(page.locator(".messagelist")).to_contain_text(
        f"Connected to Dynamics as {SANDBOX_ADMIN_EMAIL} (Contoso Sales)."
    )
    expect(page.locator(".status")).to_have_text("Connected")
    expect(page.locator(".environment")).to_have_text("Contoso Sales (contososales)")
    expect(page.locator(".org-url")).to_have_text(sandbox.base_url)
    expect(page.locator(".tenant")).to_have_text(seed.TENANT_ID)
    expect(page.locator(".auth-mode")).to_have_text("Signed-in user")
    expect(page.locator(".integration-user")).to_contain_text(SANDBOX_ADMIN_EMAIL)
    expect(page.locator(".connected-at")).to_have_text(DATE_UTC)
    expect(page.locator(".authorized-at")).to_have_text(DATE_UTC)
    expect(page.locator(".roles")).to_contain_text("System Administrator")
    expect(page.get_by_role("button", name="Reconnect Dynamics")).to_be_visible()
    integration = Integration.objects.get(team=team_people.team, subteam=None)
    assert integration.status == Integration.Status.CONNECTED
    assert integration.integration_user_email == SANDBOX_ADMIN_EMAIL
    assert integration.environment_unique_name == "contososales"


def test_admin_cancels_environment_pick(page, team_people, sandbox):
    log_in(page, team_people.admin)
    page.get_by_role("button", name="Connect Dynamics").click()
    page.wait_for_url(f"{sandbox.base_url}/**")
    page.get_by_label(SANDBOX_ADMIN_NAME).check()
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(ENVIRONMENTS_URL)

    # No environment is chosen, so Cancel must skip the browser's required-field check.
    page.get_by_role("button", name="Cancel").click()
    page.wait_for_url(SETTINGS_URL)

    expect(page.locator(".messagelist")).to_contain_text("Connecting was cancelled")
    expect(page.get_by_role("button", name="Connect Dynamics")).to_be_visible()
    integration = Integration.objects.get(team=team_people.team, subteam=None)
    assert integration.status == Integration.Status.DISCONNECTED


def test_admin_connects_application_user(page, team_people, sandbox):
    events = sandbox.environment("contosoevents")
    log_in(page, team_people.admin)
    page.get_by_role("link", name="Connect with an application user").click()
    page.get_by_label("Environment URL").fill(events.url)
    page.get_by_label("Tenant ID").fill(seed.TENANT_ID)
    page.get_by_label("Application (client) ID").fill(seed.APP_USER_CLIENT_ID)
    page.get_by_label("Client secret").fill("not-the-secret")
    page.get_by_role("button", name="Connect application user").click()

    expect(page.locator(".errornote")).to_contain_text("The client secret is wrong.")
    expect(page.get_by_label("Client secret")).to_have_value("")

    page.get_by_label("Client secret").fill(seed.APP_USER_CLIENT_SECRET)
    page.get_by_role("button", name="Connect application user").click()
    page.wait_for_url(SETTINGS_URL)

    expect(page.locator(".auth-mode")).to_have_text("Application user")
    expect(page.locator(".org-url")).to_have_text(events.url)
    expect(page.locator(".integration-user")).to_contain_text("Lead Sync Application")
    expect(page.locator(".roles")).to_contain_text("Salesperson")
    assert seed.APP_USER_CLIENT_SECRET not in page.content()
