"""The My leads page: a member's own leads, their sync state and the Sync button."""

import re

import pytest

from integrations import claims
from integrations.models import Integration, SyncJob
from integrations.permissions import MEMBER_SYNC_OFF, NO_INTEGRATION
from integrations.tests.task_queue import queued_lead_ids, queued_tasks
from leads import views
from leads.models import Lead
from teams.tests.factories import make_admin, make_lead, make_member, make_team

pytestmark = pytest.mark.django_db

URL = "/leads/mine/"


@pytest.fixture
def team_setup():
    team = make_team()
    member = make_member(team)
    integration = Integration.objects.create(
        team=team, org_url="https://org.example", auto_sync=False,
        status=Integration.Status.CONNECTED,
    )
    return team, member, integration


def rows(page):
    return re.findall(r'<tr class="lead-row" data-lead-id="(\d+)"', page)


def test_my_leads_needs_login(client):
    response = client.get(URL)
    assert response.status_code == 302
    assert response["Location"] == "/leads/login/?next=/leads/mine/"


def test_member_signs_in_to_my_leads(client, team_setup):
    from teams.tests.factories import PASSWORD

    _, member, _ = team_setup
    assert not member.is_staff

    response = client.post("/leads/login/?next=/leads/mine/",
                           {"username": member.username, "password": PASSWORD,
                            "next": "/leads/mine/"}, follow=True)

    assert response.redirect_chain == [("/leads/mine/", 302)]
    assert f"Signed in as {member.username}" in response.content.decode()


def test_wrong_password_shows_error(client, team_setup):
    _, member, _ = team_setup
    response = client.post("/leads/login/", {"username": member.username,
                                             "password": "wrong"})
    assert response.status_code == 200
    assert "Invalid username or password" in response.content.decode()


def test_my_leads_lists_own_leads_only(client, team_setup):
    team, member, _ = team_setup
    own = make_lead(team, member, company="Own Co")
    teammate_lead = make_lead(team, make_member(team), company="Teammate Co")
    Lead.objects.filter(pk=own.pk).update(
        sync_status=Lead.SyncStatus.FAILED, dynamics_record_id="rec-123",
        last_sync_error="Dynamics rejected the lead's data.")
    client.force_login(member)

    page = client.get(URL).content.decode()

    assert rows(page) == [str(own.pk)]
    assert str(teammate_lead) not in page
    assert "Failed" in page
    assert "<code>rec-123</code>" in page
    assert "Dynamics rejected the lead&#x27;s data." in page
    assert '<button type="submit" class="sync-lead">Sync to Dynamics</button>' in page
    assert "sync-refusal" not in page


def test_sync_button_disabled_when_member_sync_off(client, team_setup):
    team, member, integration = team_setup
    Integration.objects.filter(pk=integration.pk).update(member_sync_allowed=False)
    make_lead(team, member)
    client.force_login(member)

    page = client.get(URL).content.decode()

    reason = "Your admins turned member syncing off; ask a team admin to sync this lead."
    assert reason == MEMBER_SYNC_OFF
    assert 'class="sync-lead" disabled title="Your admins turned member syncing off' in page
    assert f'<p class="sync-refusal help">{reason}</p>' in page


def test_sync_button_disabled_without_integration(client):
    team = make_team()
    member = make_member(team)
    make_lead(team, member)
    client.force_login(member)

    page = client.get(URL).content.decode()

    assert "disabled" in page
    assert "no Dynamics integration is set up" in page
    assert NO_INTEGRATION.startswith("This lead cannot sync yet")


def test_sync_button_queues_lead(client, team_setup, django_capture_on_commit_callbacks):
    team, member, _ = team_setup
    lead = make_lead(team, member)
    client.force_login(member)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/leads/mine/{lead.pk}/sync/", follow=True)

    lead.refresh_from_db()
    assert response.redirect_chain == [(URL, 302)]
    assert "is queued for a sync to Dynamics" in response.content.decode()
    assert lead.sync_status == Lead.SyncStatus.QUEUED
    assert queued_lead_ids() == [lead.pk]
    assert SyncJob.objects.get().requested_by == member


def test_sync_refused_shows_reason(client, team_setup):
    team, member, integration = team_setup
    Integration.objects.filter(pk=integration.pk).update(member_sync_allowed=False)
    lead = make_lead(team, member)
    client.force_login(member)

    response = client.post(f"/leads/mine/{lead.pk}/sync/", follow=True)

    lead.refresh_from_db()
    assert MEMBER_SYNC_OFF in response.content.decode()
    assert lead.sync_status == Lead.SyncStatus.PENDING
    assert queued_tasks() == []


def test_sync_of_others_lead_not_found(client, team_setup):
    team, member, _ = team_setup
    admin = make_admin(team)
    lead = make_lead(team, member)
    client.force_login(admin)

    # My leads covers only one's own leads, even for an admin, who uses the admin instead.
    assert client.post(f"/leads/mine/{lead.pk}/sync/").status_code == 404


def test_sync_needs_post(client, team_setup):
    team, member, _ = team_setup
    lead = make_lead(team, member)
    client.force_login(member)
    assert client.get(f"/leads/mine/{lead.pk}/sync/").status_code == 405


def test_my_leads_paginates(client, team_setup):
    team, member, _ = team_setup
    for index in range(55):
        make_lead(team, member, last_name=f"Paged {index}")
    client.force_login(member)

    first = client.get(URL).content.decode()
    second = client.get(URL, {"page": 2}).content.decode()

    assert len(rows(first)) == 50
    assert len(rows(second)) == 5
    assert "Page 2 of 2" in second


def test_my_leads_queries_do_not_grow(client, team_setup, django_assert_max_num_queries):
    team, member, _ = team_setup
    for index in range(30):
        make_lead(team, member, last_name=f"Counted {index}")
    client.force_login(member)

    # Session, user, count, page of leads, role, subteams, integration lookups: about 10.
    with django_assert_max_num_queries(12):
        response = client.get(URL)

    assert response.status_code == 200


def test_claimed_lead_shows_syncing(client, team_setup):
    team, member, _ = team_setup
    claimed = make_lead(team, member, sync_status=Lead.SyncStatus.QUEUED)
    waiting = make_lead(team, member, sync_status=Lead.SyncStatus.QUEUED)
    claims.claim([claimed.pk])
    client.force_login(member)

    page = client.get(URL).content.decode()

    statuses = dict(re.findall(r'data-lead-id="(\d+)".*?<td class="sync-status">([^<]*)</td>',
                               page, re.S))
    assert statuses[str(claimed.pk)] == "Syncing"
    assert statuses[str(waiting.pk)] == "Queued"


def test_my_leads_pages_link_both_ways(client, team_setup):
    team, member, _ = team_setup
    leads = [make_lead(team, member, email=f"paged{index}@example.com")
             for index in range(views.PAGE_SIZE + 1)]
    client.force_login(member)

    first = client.get(URL).content.decode()
    second = client.get(URL, {"page": 2}).content.decode()

    assert '<a href="?page=2">Older</a>' in first
    assert "Newer</a>" not in first
    assert '<a href="?page=1">Newer</a>' in second
    assert len(rows(first)) == views.PAGE_SIZE
    assert len(rows(second)) == 1
    assert set(rows(first) + rows(second)) == {str(lead.pk) for lead in leads}
