"""Take the README's screenshots of the Sync Settings page in headless Chromium.

Run with `make screenshots` (pytest collects this file only when it is named, so the
test suite never rewrites the images). It connects a demo team through the sandbox's
sign-in and saves the page with the advanced settings collapsed and expanded.
"""

from pathlib import Path

from playwright.sync_api import expect

from teams.tests.factories import make_admin, make_member, make_team, make_user

from .conftest import connect_dynamics, log_in

SCREENSHOT_DIR = Path(__file__).resolve().parent.parent / "docs" / "screenshots"


def test_settings_page_screenshots(page):
    team = make_team("Contoso Sales")
    admin = make_admin(team, make_user("alex"))
    make_member(team, make_user("sam"))
    log_in(page, admin)
    connect_dynamics(page)
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)

    page.reload()
    expect(page.locator("#advanced-settings")).to_be_hidden()
    page.screenshot(path=SCREENSHOT_DIR / "settings-collapsed.png", full_page=True)

    page.locator("#advanced-toggle").click()
    expect(page.locator("#advanced-settings")).to_be_visible()
    page.screenshot(path=SCREENSHOT_DIR / "settings-expanded.png", full_page=True)
