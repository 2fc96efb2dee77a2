"""Manual syncs in the browser: a member's own lead from My leads, and an admin's bulk
sync with its job page."""

import pytest
from playwright.sync_api import expect

from integrations.models import Integration
from leads.models import Lead
from teams.tests.factories import make_lead

from .conftest import connect_dynamics, log_in, run_queued_tasks, sign_in_member

# The job page polls its progress every second, then reloads to show the summary.
JOB_SUMMARY_TIMEOUT_MS = 20_000


@pytest.fixture
def connected_team(page, team_people):
    """The team connected through the sandbox's sign-in, with the browser logged out."""
    log_in(page, team_people.admin)
    connect_dynamics(page)
    page.context.clear_cookies()
    return team_people


def add_lead(people, member, name):
    """Create a pending lead of `member`, without the capture service, which would queue
    its sync while Auto Sync is on."""
    return make_lead(people.team, member, first_name="Browser", last_name=name,
                     email=f"browser.{name.lower()}.{people.team.pk}@example.org",
                     company=f"{name} Ltd")


def test_member_syncs_own_lead(page, connected_team, sandbox):
    member = connected_team.member
    lead = add_lead(connected_team, member, "Member")
    other = add_lead(connected_team, connected_team.members[1], "Colleague")
    sign_in_member(page, member)

    row = page.locator(f'.lead-row[data-lead-id="{lead.pk}"]')
    expect(row.locator(".sync-status")).to_have_text("Pending")
    expect(page.locator(f'.lead-row[data-lead-id="{other.pk}"]')).to_have_count(0)
    row.locator(".sync-lead").click()

    expect(page.locator(".messagelist")).to_contain_text("is queued for a sync to Dynamics")
    expect(row.locator(".sync-status")).to_have_text("Queued")
    assert run_queued_tasks() == 1
    page.reload()
    expect(row.locator(".sync-status")).to_have_text("Synced")
    lead.refresh_from_db()
    expect(row.locator(".dynamics-record-id")).to_have_text(lead.dynamics_record_id)
    assert lead.sync_status == Lead.SyncStatus.SYNCED
    record = sandbox.store.get(lead.dynamics_entity, lead.dynamics_record_id)
    assert record["emailaddress1"] == lead.email


def test_member_sync_refused_when_off(page, connected_team):
    Integration.objects.filter(team=connected_team.team).update(member_sync_allowed=False)
    member = connected_team.member
    lead = add_lead(connected_team, member, "Refused")
    sign_in_member(page, member)

    row = page.locator(f'.lead-row[data-lead-id="{lead.pk}"]')
    expect(row.locator(".sync-lead")).to_be_disabled()
    expect(row.locator(".sync-refusal")).to_contain_text("turned member syncing off")
    expect(row.locator(".sync-status")).to_have_text("Pending")
    lead.refresh_from_db()
    assert lead.sync_status == Lead.SyncStatus.PENDING


def test_admin_bulk_sync_shows_summary(page, connected_team, sandbox):
    leads = [add_lead(connected_team, member, f"Bulk{number}")
             for number, member in enumerate(connected_team.members * 2)]
    log_in(page, connected_team.admin, next_path="/admin/leads/lead/")

    for lead in leads:
        page.locator(f'input[name="_selected_action"][value="{lead.pk}"]').check()
    page.locator('select[name="action"]').select_option("sync_to_dynamics")
    page.get_by_role("button", name="Go").click()

    page.wait_for_url("**/integrations/sync/jobs/*/")
    expect(page.locator("#job-progress")).to_be_visible()
    expect(page.locator("#job-progress")).to_have_attribute("max", str(len(leads)))
    expect(page.locator("#job-summary")).to_be_hidden()
    assert run_queued_tasks() == 1
    summary = page.locator("#job-summary")
    expect(summary).to_be_visible(timeout=JOB_SUMMARY_TIMEOUT_MS)
    expect(summary.locator(".created")).to_have_text(str(len(leads)))
    expect(summary.locator(".failed")).to_have_text("0")
    expect(page.locator("#job-progress")).to_have_attribute("value", str(len(leads)))
    statuses = set(Lead.objects.filter(pk__in=[lead.pk for lead in leads])
                   .values_list("sync_status", flat=True))
    assert statuses == {Lead.SyncStatus.SYNCED}
    assert len(sandbox.store.records("lead")) >= len(leads)


def test_enter_in_lead_admin_only_saves(page, team_people):
    lead = add_lead(team_people, team_people.member, "Enter")
    log_in(page, team_people.admin, f"/admin/leads/lead/{lead.pk}/change/")

    page.get_by_label("Job title").fill("Engineer")
    page.get_by_label("Job title").press("Enter")
    page.wait_for_url("**/admin/leads/lead/")

    lead.refresh_from_db()
    expect(page.locator(".messagelist")).to_contain_text("was changed successfully")
    assert lead.job_title == "Engineer"
    assert lead.sync_status == Lead.SyncStatus.PENDING


def test_lead_admin_saves_then_syncs(page, connected_team):
    lead = add_lead(connected_team, connected_team.member, "Both")
    log_in(page, connected_team.admin, f"/admin/leads/lead/{lead.pk}/change/")

    page.get_by_label("Job title").fill("Engineer")
    page.get_by_role("button", name="Save and sync to Dynamics").click()
    page.wait_for_url("**/integrations/sync/jobs/*/")
    run_queued_tasks()

    lead.refresh_from_db()
    expect(page.locator(".messagelist")).to_contain_text(f"The lead “{lead}” was saved.")
    assert lead.job_title == "Engineer"
    assert lead.sync_status == Lead.SyncStatus.SYNCED
