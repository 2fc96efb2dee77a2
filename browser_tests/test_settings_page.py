"""The Sync Settings page of a connected integration: permissions, settings, mappings."""

import pytest
from playwright.sync_api import expect

from integrations.models import FieldMapping, Integration

from .conftest import connect_dynamics, log_in


@pytest.fixture
def connected_page(page, team_people):
    """The admin's settings page, right after connecting through the sandbox's sign-in."""
    log_in(page, team_people.admin)
    connect_dynamics(page)
    return page


def test_permissions_page_lists_privileges(connected_page):
    page = connected_page

    page.locator("#see-permissions").click()

    expect(page.locator("#user-roles")).to_contain_text("System Administrator")
    create_lead = page.locator('tr.privilege[data-privilege="prvCreateLead"]')
    expect(create_lead).to_have_attribute("data-present", "true")
    expect(create_lead).to_contain_text("Present")
    expect(page.locator('tr.privilege[data-present="false"]')).to_have_count(0)


def test_advanced_settings_collapsed_until_show(connected_page):
    page = connected_page
    advanced = page.locator("#advanced-settings")
    toggle = page.locator("#advanced-toggle")
    expect(advanced).to_be_hidden()
    expect(toggle).to_have_text("Show")
    expect(toggle).to_have_attribute("aria-expanded", "false")

    toggle.click()

    expect(advanced).to_be_visible()
    expect(advanced.get_by_label("Members may sync their own leads")).to_be_visible()
    expect(toggle).to_have_text("Hide")
    expect(toggle).to_have_attribute("aria-expanded", "true")

    toggle.click()

    expect(advanced).to_be_hidden()


def test_saved_settings_survive_reload(connected_page, team_people):
    page = connected_page
    auto_sync = page.get_by_label("Auto Sync", exact=True)
    expect(auto_sync).to_be_checked()
    auto_sync.uncheck()
    page.locator("#advanced-toggle").click()
    page.get_by_label("Search for existing Accounts by Website").check()
    page.get_by_label("Members may sync their own leads").uncheck()

    page.locator("#save-settings").click()

    expect(page.locator(".messagelist")).to_contain_text("Settings saved.")
    page.reload()
    expect(page.get_by_label("Auto Sync", exact=True)).not_to_be_checked()
    page.locator("#advanced-toggle").click()
    expect(page.get_by_label("Search for existing Accounts by Website")).to_be_checked()
    expect(page.get_by_label("Members may sync their own leads")).not_to_be_checked()
    expect(page.locator("#settings-history")).to_contain_text("auto_sync")
    integration = Integration.objects.get(team=team_people.team, subteam=None)
    assert integration.auto_sync is False
    assert integration.search_accounts_by_website is True
    assert integration.member_sync_allowed is False


def test_added_mapping_is_saved(connected_page, team_people):
    page = connected_page
    page.locator('[data-tab="lead"]').click()
    lead_panel = page.locator('[data-tab-panel="lead"]')
    rows_before = lead_panel.locator(".mapping-row:visible").count()

    page.locator('.add-mapping[data-entity="lead"]').click()

    new_row = lead_panel.locator(".mapping-row").last
    expect(lead_panel.locator(".mapping-row:visible")).to_have_count(rows_before + 1)
    new_row.locator("[name$='-column']").select_option("description")
    new_row.locator("[name$='-value_type']").select_option("fixed")
    expect(new_row.locator("[name$='-fixed_value']")).to_be_visible()
    new_row.locator("[name$='-fixed_value']").fill("Met at the browser test booth")
    new_row.locator("[name$='-mode']").select_option("append")
    page.locator("#save-settings").click()

    expect(page.locator(".messagelist")).to_contain_text("Settings saved.")
    page.reload()
    page.locator('[data-tab="lead"]').click()
    saved_row = lead_panel.locator(".mapping-row").filter(
        has=page.locator("[name$='-fixed_value'][value='Met at the browser test booth']")
    )
    expect(saved_row).to_have_count(1)
    expect(saved_row.locator("[name$='-column']")).to_have_value("description")
    expect(saved_row.locator("[name$='-mode']")).to_have_value("append")
    mapping = FieldMapping.objects.get(integration__team=team_people.team,
                                       entity="lead", column="description")
    assert mapping.fixed_value == "Met at the browser test booth"
    assert mapping.mode == FieldMapping.Mode.APPEND


def test_connection_checks_all_pass(connected_page):
    page = connected_page

    page.locator("#test-connection").click()

    messages = page.locator(".messagelist")
    for check in ("Sign-in and WhoAmI", "Read the user's roles", "Query leads"):
        expect(messages).to_contain_text(f"{check}: passed.")
    expect(messages).not_to_contain_text("failed")
    expect(page.locator(".status")).to_have_text("Connected")


def test_disconnect_asks_then_keeps_settings(connected_page, team_people):
    page = connected_page
    dialogs = []

    def dismiss(dialog):
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.once("dialog", dismiss)
    page.locator("#disconnect").click()
    expect(page.locator(".status")).to_have_text("Connected")
    assert len(dialogs) == 1
    assert dialogs[0].startswith("Disconnect Dynamics?")

    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#disconnect").click()

    expect(page.locator(".messagelist")).to_contain_text("Disconnected from Dynamics.")
    expect(page.locator(".status")).to_have_text("Not connected")
    expect(page.locator("#disconnect")).to_have_count(0)
    expect(page.get_by_role("button", name="Reconnect Dynamics")).to_be_visible()
    integration = Integration.objects.get(team=team_people.team, subteam=None)
    assert integration.token_cache_encrypted == ""
    assert integration.field_mappings.exists()
