"""Connecting Dynamics from the Sync Settings page, through the sandbox's sign-in."""

import re

from playwright.sync_api import expect

from integrations.models import Integration

from .conftest import SANDBOX_ADMIN_EMAIL, SANDBOX_ADMIN_NAME, SETTINGS_URL, log_in

DATE_UTC = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC$")


def test_admin_connects_through_sign_in(page, team_people, sandbox):
    log_in(page, team_people.admin)
    expect(page.locator(".integration-user")).to_have_count(0)

    page.get_by_role("button", name="Connect Dynamics").click()
    page.wait_for_url(f"{sandbox.base_url}/**")
    expect(page.locator("h1")).to_have_text("Sign in to the Dynamics sandbox")
    page.get_by_label(SANDBOX_ADMIN_NAME).check()
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(SETTINGS_URL)

    expect(page.locator(".messagelist")).to_contain_text(
        f"Connected to Dynamics as {SANDBOX_ADMIN_EMAIL}."
    )
    expect(page.locator(".status")).to_have_text("Connected")
    expect(page.locator(".integration-user")).to_contain_text(SANDBOX_ADMIN_EMAIL)
    expect(page.locator(".connected-at")).to_have_text(DATE_UTC)
    expect(page.locator(".authorized-at")).to_have_text(DATE_UTC)
    expect(page.locator(".roles")).to_contain_text("System Administrator")
    expect(page.get_by_role("button", name="Reconnect Dynamics")).to_be_visible()
    integration = Integration.objects.get(team=team_people.team, subteam=None)
    assert integration.status == Integration.Status.CONNECTED
    assert integration.integration_user_email == SANDBOX_ADMIN_EMAIL
