"""Which leads get queued when they are captured or when an org is connected."""

import pytest

from integrations import services
from integrations.models import Integration
from leads.models import Lead
from leads.services import capture_lead
from teams.services import add_subteam_member
from teams.tests.factories import make_member, make_subteam, make_team

from .task_queue import queued_lead_ids, queued_tasks

pytestmark = pytest.mark.django_db




def test_many_leads_go_in_bulk_tasks(django_capture_on_commit_callbacks):
    team = make_team()
    member = make_member(team)
    leads = [Lead.objects.create(team=team, captured_by=member, last_name=f"Bulk {index}")
             for index in range(services.BULK_TASK_SIZE + 5)]
    with django_capture_on_commit_callbacks(execute=True):
        services.enqueue_syncs([lead.pk for lead in leads])
    functions = [task["func"] for task in queued_tasks()]
    assert functions == [services.BULK_SYNC_TASK, services.BULK_SYNC_TASK]
    assert sorted(queued_lead_ids()) == sorted(lead.pk for lead in leads)


def test_capture_without_integration_stays_pending(django_capture_on_commit_callbacks):
    team = make_team()
    member = make_member(team)
    with django_capture_on_commit_callbacks(execute=True):
        lead = capture_lead(member=member, team=team, data={"last_name": "Pending"})
    lead.refresh_from_db()
    assert lead.sync_status == Lead.SyncStatus.PENDING
    assert "No Dynamics integration" in lead.last_sync_error
    assert queued_lead_ids() == []


def test_capture_with_auto_sync_is_queued(django_capture_on_commit_callbacks):
    team = make_team()
    member = make_member(team)
    Integration.objects.create(team=team, org_url="https://org.example",
                               status=Integration.Status.CONNECTED)
    with django_capture_on_commit_callbacks(execute=True):
        lead = capture_lead(member=member, team=team, data={"last_name": "Queued"})
    returned_status = lead.sync_status
    lead.refresh_from_db()
    assert returned_status == Lead.SyncStatus.QUEUED
    assert lead.sync_status == Lead.SyncStatus.QUEUED
    assert queued_lead_ids() == [lead.pk]


def test_capture_with_auto_sync_off_waits(django_capture_on_commit_callbacks):
    team = make_team()
    member = make_member(team)
    Integration.objects.create(team=team, org_url="https://org.example", auto_sync=False,
                               status=Integration.Status.CONNECTED)
    with django_capture_on_commit_callbacks(execute=True):
        lead = capture_lead(member=member, team=team, data={"last_name": "Waiting"})
    lead.refresh_from_db()
    assert lead.sync_status == Lead.SyncStatus.PENDING
    assert "Auto Sync is off" in lead.last_sync_error
    assert queued_lead_ids() == []


def test_rolled_back_capture_is_not_queued(django_capture_on_commit_callbacks):
    team = make_team()
    member = make_member(team)
    Integration.objects.create(team=team, org_url="https://org.example",
                               status=Integration.Status.CONNECTED)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        capture_lead(member=member, team=team, data={"last_name": "Rolled back"})
    assert len(callbacks) == 1
    assert queued_lead_ids() == []


def test_subteam_integration_wins(django_capture_on_commit_callbacks):
    from teams.services import add_subteam_member
    from teams.tests.factories import make_subteam

    team = make_team()
    member = make_member(team)
    subteam = make_subteam(team)
    add_subteam_member(subteam, member)
    Integration.objects.create(team=team, org_url="https://team.example")
    own = Integration.objects.create(team=team, subteam=subteam, org_url="https://sub.example")
    lead = Lead.objects.create(team=team, captured_by=member, last_name="Sub")
    assert services.integration_for_lead(lead) == own


def test_connect_queues_waiting_leads(django_capture_on_commit_callbacks):
    team = make_team()
    member = make_member(team)
    waiting = Lead.objects.create(team=team, captured_by=member, last_name="Waiting")
    integration = Integration.objects.create(team=team, org_url="https://org.example",
                                             status=Integration.Status.CONNECTED)
    with django_capture_on_commit_callbacks(execute=True):
        queued = services.enqueue_waiting_leads(integration)
    assert queued == 1
    assert queued_lead_ids() == [waiting.pk]


def test_syncs_in_bulk_queues_one_task(django_capture_on_commit_callbacks):
    team = make_team()
    member = make_member(team)
    Integration.objects.create(team=team, org_url="https://org.example",
                               status=Integration.Status.CONNECTED)
    with django_capture_on_commit_callbacks(execute=True):
        with services.syncs_in_bulk():
            leads = [capture_lead(member=member, team=team, data={"last_name": f"B{index}"})
                     for index in range(5)]
    functions = [task["func"] for task in queued_tasks()]
    assert functions == [services.BULK_SYNC_TASK]
    assert sorted(queued_lead_ids()) == sorted(lead.pk for lead in leads)


def test_disconnected_subteam_named_in_reason(django_capture_on_commit_callbacks):
    team = make_team()
    member = make_member(team)
    subteam = make_subteam(team, "Booth Crew")
    add_subteam_member(subteam, member)
    Integration.objects.create(team=team, org_url="https://org.example",
                               status=Integration.Status.CONNECTED)
    Integration.objects.create(team=team, subteam=subteam, org_url="https://org.example",
                               status=Integration.Status.DISCONNECTED)
    with django_capture_on_commit_callbacks(execute=True):
        lead = capture_lead(member=member, team=team, data={"last_name": "Crew"})
    lead.refresh_from_db()
    assert lead.sync_status == Lead.SyncStatus.PENDING
    assert "not connected for the subteam Booth Crew" in lead.last_sync_error


def test_reauthorization_reason_covers_app_secret(django_capture_on_commit_callbacks):
    team = make_team()
    member = make_member(team)
    Integration.objects.create(team=team, org_url="https://org.example",
                               status=Integration.Status.REAUTHORIZATION_NEEDED)
    with django_capture_on_commit_callbacks(execute=True):
        lead = capture_lead(member=member, team=team, data={"last_name": "Secret"})
    lead.refresh_from_db()
    assert "of this team must be authorized again" in lead.last_sync_error
    assert "application user's secret" in lead.last_sync_error
