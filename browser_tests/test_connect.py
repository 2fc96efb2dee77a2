"""Connecting Dynamics from the Sync Settings page, through the sandbox's sign-in."""

import re

from integrations.models import Integration

from .conftest import SANDBOX_ADMIN_EMAIL, SANDBOX_ADMIN_NAME, log_in

DATE_UTC = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC$")


def test_admin_connects_through_sign_in(page, team_people, sandbox, live_server):
    log_in(page, team_people.admin)
    team_block = page.locator(f"#team-{team_people.team.pk}")
    assert team_block.locator(".status").inner_text() == "Not connected"

    team_block.get_by_role("button", name="Connect Dynamics").click()
    page.wait_for_url(f"{sandbox.base_url}/**")
    assert page.locator("h1").inner_text() == "Sign in to the Dynamics sandbox"
    page.get_by_label(SANDBOX_ADMIN_NAME).check()
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{live_server.url}/integrations/settings/")

    messages = page.locator(".messagelist").inner_text()
    assert f"Connected to Dynamics as {SANDBOX_ADMIN_EMAIL}." in messages
    assert team_block.locator(".status").inner_text() == "Connected"
    assert SANDBOX_ADMIN_EMAIL in team_block.locator(".integration-user").inner_text()
    assert DATE_UTC.match(team_block.locator(".connected-at").inner_text())
    assert DATE_UTC.match(team_block.locator(".authorized-at").inner_text())
    assert "System Administrator" in team_block.locator(".roles").inner_text()
    assert team_block.get_by_role("button", name="Reconnect Dynamics").is_visible()
    integration = Integration.objects.get(team=team_people.team, subteam=None)
    assert integration.status == Integration.Status.CONNECTED
    assert integration.integration_user_email == SANDBOX_ADMIN_EMAIL
