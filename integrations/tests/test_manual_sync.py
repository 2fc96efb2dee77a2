"""Manual syncs: who may sync which lead, the sync API, sync jobs and the sync log."""


import pytest
from django.urls import reverse

from integrations import jobs, permissions, sync_views
from integrations.models import Integration, SyncJob, SyncLog
from leads.models import Lead
from teams.models import SubteamMembership
from teams.tests.factories import make_admin, make_lead, make_member, make_subteam, make_team

from .conftest import SANDBOX_READER, ConnectedTeam, unique_email
from .task_queue import queued_lead_ids, queued_tasks, run_queued_tasks

pytestmark = pytest.mark.django_db






class World:
    """Team A with every role and a connected integration (no real org), and team B.

    Team A: `admin`; `subteam_admin`, who administers `subteam` with `subteam_member` in
    it; `member`, outside the subteam. Team B: `other_admin`, `other_member`. Each member
    has one lead. Nothing here reaches Dynamics unless a test runs the queued tasks.
    """

    def __init__(self, member_sync_allowed=True):
        self.team = make_team()
        self.admin = make_admin(self.team)
        self.member = make_member(self.team)
        self.subteam_admin = make_member(self.team)
        self.subteam_member = make_member(self.team)
        self.subteam = make_subteam(self.team)
        SubteamMembership.objects.create(subteam=self.subteam, user=self.subteam_admin,
                                         is_admin=True)
        SubteamMembership.objects.create(subteam=self.subteam, user=self.subteam_member)
        self.integration = Integration.objects.create(
            team=self.team, org_url="https://org.example", auto_sync=False,
            member_sync_allowed=member_sync_allowed, status=Integration.Status.CONNECTED,
        )
        self.member_lead = make_lead(self.team, self.member, email=unique_email("member"))
        self.subteam_lead = make_lead(self.team, self.subteam_member,
                                      email=unique_email("subteam"))
        self.admin_lead = make_lead(self.team, self.admin, email=unique_email("admin"))

        self.other_team = make_team()
        self.other_admin = make_admin(self.other_team)
        self.other_member = make_member(self.other_team)
        self.other_lead = make_lead(self.other_team, self.other_member,
                                    email=unique_email("other"))


@pytest.fixture
def world():
    return World()


# -- Who may sync ------------------------------------------------------------------------

def test_member_may_sync_own_lead(world):
    assert permissions.can_sync(world.member, world.member_lead) == (True, "")


def test_member_refused_when_member_sync_off(world):
    Integration.objects.filter(pk=world.integration.pk).update(member_sync_allowed=False)

    allowed, reason = permissions.can_sync(world.member, world.member_lead)

    assert not allowed
    assert reason == ("Your admins turned member syncing off; ask a team admin to sync "
                      "this lead.")


def test_member_cannot_sync_teammates_lead(world):
    allowed, reason = permissions.can_sync(world.member, world.subteam_lead)
    assert not allowed
    assert reason == permissions.NOT_OWN_LEAD


def test_team_admin_syncs_any_team_lead(world):
    Integration.objects.filter(pk=world.integration.pk).update(member_sync_allowed=False)
    for lead in (world.member_lead, world.subteam_lead, world.admin_lead):
        assert permissions.can_sync(world.admin, lead) == (True, ""), lead


def test_subteam_admin_syncs_subteam_leads_only(world):
    Integration.objects.filter(pk=world.integration.pk).update(member_sync_allowed=False)

    assert permissions.can_sync(world.subteam_admin, world.subteam_lead) == (True, "")
    allowed, reason = permissions.can_sync(world.subteam_admin, world.member_lead)
    assert not allowed
    assert reason == permissions.NOT_SUBTEAM_LEAD


def test_other_team_lead_reads_as_not_found(world):
    for user in (world.other_admin, world.other_member):
        allowed, reason = permissions.can_sync(user, world.member_lead)
        assert not allowed
        assert reason == permissions.LEAD_NOT_FOUND


def test_superuser_syncs_any_lead(world):
    from teams.tests.factories import make_superuser

    assert permissions.can_sync(make_superuser(), world.member_lead) == (True, "")


def test_lead_without_integration_refused(world):
    allowed, reason = permissions.can_sync(world.other_admin, world.other_lead)
    assert not allowed
    assert reason == permissions.NO_INTEGRATION


def test_disconnected_integration_refused(world):
    Integration.objects.filter(pk=world.integration.pk).update(
        status=Integration.Status.REAUTHORIZATION_NEEDED)

    allowed, reason = permissions.can_sync(world.admin, world.member_lead)

    assert not allowed
    assert "The Dynamics connection of this team must be authorized again" in reason
    assert "A team admin must reconnect on the Sync Settings page." in reason


def test_never_connected_subteam_refused(world):
    Integration.objects.create(team=world.team, subteam=world.subteam,
                               org_url="https://org.example")

    allowed, reason = permissions.can_sync(world.admin, world.subteam_lead)

    assert not allowed
    assert reason == (f"This lead cannot sync yet. Dynamics is not connected for the "
                      f"subteam {world.subteam.name}. A team admin must connect Dynamics on "
                      f"the Sync Settings page.")


def test_inactive_user_cannot_sync(world):
    world.member.is_active = False
    world.member.save()
    assert permissions.can_sync(world.member, world.member_lead) == (
        False, permissions.LEAD_NOT_FOUND)


# -- Starting a sync ---------------------------------------------------------------------

def test_start_sync_queues_allowed_refuses_rest(world, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        started = jobs.start_sync(world.member, [world.member_lead, world.subteam_lead])

    assert started.queued == [world.member_lead.pk]
    assert started.refused == {world.subteam_lead.pk: permissions.NOT_OWN_LEAD}
    assert started.job.lead_ids == [world.member_lead.pk]
    assert started.job.requested_by == world.member
    assert started.job.integration == world.integration
    assert queued_lead_ids() == [world.member_lead.pk]
    world.subteam_lead.refresh_from_db()
    assert world.subteam_lead.sync_status == Lead.SyncStatus.PENDING


def test_start_sync_with_nothing_allowed_makes_no_job(world):
    started = jobs.start_sync(world.other_member, [world.member_lead])
    assert started.jobs == []
    assert started.job is None
    assert SyncJob.objects.count() == 0


def test_start_sync_makes_one_job_per_integration(world, django_capture_on_commit_callbacks):
    subteam_integration = Integration.objects.create(
        team=world.team, subteam=world.subteam, org_url="https://org.example",
        status=Integration.Status.CONNECTED)

    with django_capture_on_commit_callbacks(execute=True):
        started = jobs.start_sync(world.admin, [world.member_lead, world.subteam_lead])

    by_integration = {job.integration_id: job.lead_ids for job in started.jobs}
    assert by_integration == {world.integration.pk: [world.member_lead.pk],
                              subteam_integration.pk: [world.subteam_lead.pk]}
    assert started.job is None
    assert sorted(queued_lead_ids()) == sorted([world.member_lead.pk, world.subteam_lead.pk])


def test_start_sync_by_ids_hides_other_teams(world):
    started = jobs.start_sync_by_ids(world.admin, [world.other_lead.pk, 999999,
                                                   world.member_lead.pk])
    assert started.queued == [world.member_lead.pk]
    assert started.refused == {world.other_lead.pk: permissions.LEAD_NOT_FOUND,
                               999999: permissions.LEAD_NOT_FOUND}


# -- The sync API ------------------------------------------------------------------------

def test_api_sync_one_lead(world, client, django_capture_on_commit_callbacks):
    client.force_login(world.member)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/api/leads/{world.member_lead.pk}/sync/")

    assert response.status_code == 202, response.content
    body = response.json()
    assert body["id"] == world.member_lead.pk
    assert body["sync_status"] == "queued"
    assert body["job_url"] == f"/integrations/sync/jobs/{body['job_id']}/"
    assert queued_lead_ids() == [world.member_lead.pk]


def test_api_sync_refused_with_reason(world, client):
    Integration.objects.filter(pk=world.integration.pk).update(member_sync_allowed=False)
    client.force_login(world.member)

    response = client.post(f"/api/leads/{world.member_lead.pk}/sync/")

    assert response.status_code == 403
    assert response.json()["detail"] == permissions.MEMBER_SYNC_OFF
    assert queued_tasks() == []


def test_api_sync_teammates_lead_forbidden(world, client):
    client.force_login(world.member)
    response = client.post(f"/api/leads/{world.subteam_lead.pk}/sync/")
    assert response.status_code == 403
    assert response.json()["detail"] == permissions.NOT_OWN_LEAD


def test_api_sync_other_team_not_found(world, client):
    client.force_login(world.other_admin)
    assert client.post(f"/api/leads/{world.member_lead.pk}/sync/").status_code == 404
    assert client.post("/api/leads/999999/sync/").status_code == 404


def test_api_admin_syncs_members_lead(world, client):
    client.force_login(world.admin)
    response = client.post(f"/api/leads/{world.member_lead.pk}/sync/")
    assert response.status_code == 202
    assert response.json()["sync_status"] == "queued"


def test_api_bulk_sync(world, client, django_capture_on_commit_callbacks):
    client.force_login(world.subteam_admin)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/api/leads/sync/",
            {"ids": [world.subteam_lead.pk, world.member_lead.pk, world.other_lead.pk]},
            content_type="application/json",
        )

    assert response.status_code == 202, response.content
    body = response.json()
    job = SyncJob.objects.get()
    assert body["job_id"] == job.pk
    assert body["job_ids"] == [job.pk]
    assert body["queued"] == [world.subteam_lead.pk]
    assert body["refused"] == {
        str(world.member_lead.pk): permissions.NOT_SUBTEAM_LEAD,
        str(world.other_lead.pk): permissions.LEAD_NOT_FOUND,
    }
    assert queued_lead_ids() == [world.subteam_lead.pk]


@pytest.mark.parametrize("body", [
    {}, {"ids": []}, {"ids": "1,2"}, {"ids": ["x"]}, {"ids": [0]},
    {"ids": list(range(1, 1002))},
])
def test_api_bulk_sync_rejects_bad_body(world, client, body):
    client.force_login(world.admin)
    response = client.post("/api/leads/sync/", body, content_type="application/json")
    assert response.status_code == 400, body
    assert "ids" in response.json()


def test_api_sync_needs_login(world, client):
    assert client.post(f"/api/leads/{world.member_lead.pk}/sync/").status_code == 401
    assert client.post("/api/leads/sync/", {"ids": [1]},
                       content_type="application/json").status_code == 401


# -- Jobs and their progress -------------------------------------------------------------

def test_job_progress_waits_while_queued(world, client):
    started = jobs.start_sync(world.admin, [world.member_lead, world.admin_lead])
    client.force_login(world.admin)

    response = client.get(f"/integrations/sync/jobs/{started.job.pk}/progress/")

    assert response.json() == {
        "id": started.job.pk, "status": "running", "total": 2, "done": 0, "created": 0,
        "updated": 0, "skipped": 0, "failed": 0, "waiting": 2, "finished": False,
    }
    page = client.get(f"/integrations/sync/jobs/{started.job.pk}/").content.decode()
    assert '<progress id="job-progress" max="2" value="0">' in page
    assert '<div class="module" id="job-summary" hidden>' in page


def test_job_counts_lead_left_pending_as_failed(world):
    started = jobs.start_sync(world.admin, [world.member_lead])
    Lead.objects.filter(pk=world.member_lead.pk).update(
        sync_status=Lead.SyncStatus.PENDING, last_sync_error="Waiting: sign in again.")

    progress = jobs.job_progress(started.job)

    assert (progress.failed, progress.waiting, progress.finished) == (1, 0, True)
    assert progress.problems[0].reason == "Waiting: sign in again."
    started.job.refresh_from_db()
    assert started.job.status == SyncJob.Status.DONE
    assert started.job.finished_at is not None


def test_job_counts_deleted_lead_as_failed(world):
    started = jobs.start_sync(world.admin, [world.member_lead])
    Lead.objects.filter(pk=world.member_lead.pk).delete()

    progress = jobs.job_progress(started.job)

    assert (progress.total, progress.failed) == (1, 1)
    assert progress.problems[0].reason.startswith("The lead was deleted, so whether it")


def test_member_syncs_through_sandbox(connected_team, client,
                                      django_capture_on_commit_callbacks):
    leads = [make_lead(connected_team.team, connected_team.member,
                       email=unique_email(f"bulk{index}"), company="Manual Sync Ltd")
             for index in range(3)]
    client.force_login(connected_team.member)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/api/leads/sync/", {"ids": [lead.pk for lead in leads]},
                               content_type="application/json")
    job_id = response.json()["job_id"]

    run_queued_tasks()
    progress = client.get(f"/integrations/sync/jobs/{job_id}/progress/").json()
    page = client.get(f"/integrations/sync/jobs/{job_id}/").content.decode()

    assert progress["status"] == "done"
    assert (progress["total"], progress["done"], progress["created"]) == (3, 3, 3)
    assert (progress["failed"], progress["waiting"]) == (0, 0)
    assert '<div class="module" id="job-summary">' in page
    assert '<td class="created">3</td>' in page
    for lead in leads:
        lead.refresh_from_db()
        assert lead.sync_status == Lead.SyncStatus.SYNCED
        assert lead.dynamics_record_id


def test_second_sync_counts_as_updated(connected_team, client,
                                       django_capture_on_commit_callbacks):
    lead = make_lead(connected_team.team, connected_team.member, email=unique_email("again"))
    client.force_login(connected_team.admin)
    for _ in range(2):
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(f"/api/leads/{lead.pk}/sync/")
        run_queued_tasks()

    progress = client.get(f"/integrations/sync/jobs/{response.json()['job_id']}/progress/")

    assert progress.json()["updated"] == 1
    assert progress.json()["created"] == 0


def test_job_summary_lists_failures(client, sandbox, dynamics_settings,
                                    django_capture_on_commit_callbacks):
    reader_team = ConnectedTeam(client, sandbox, dynamics_email=SANDBOX_READER)
    lead = make_lead(reader_team.team, reader_team.member, email=unique_email("denied"))
    client.force_login(reader_team.admin)
    with django_capture_on_commit_callbacks(execute=True):
        job_id = client.post(f"/api/leads/{lead.pk}/sync/").json()["job_id"]

    run_queued_tasks()
    progress = client.get(f"/integrations/sync/jobs/{job_id}/progress/").json()
    page = client.get(f"/integrations/sync/jobs/{job_id}/").content.decode()

    assert (progress["failed"], progress["done"], progress["status"]) == (1, 1, "done")
    assert f'<tr class="job-problem" data-lead-id="{lead.pk}">' in page
    assert "lacks a privilege" in page


def test_job_page_access(world, client):
    started = jobs.start_sync(world.member, [world.member_lead])
    url = f"/integrations/sync/jobs/{started.job.pk}/"
    expected = {
        world.member: 200, world.admin: 200, world.subteam_admin: 403,
        world.subteam_member: 403, world.other_admin: 404, world.other_member: 404,
    }
    for user, status in expected.items():
        client.force_login(user)
        assert client.get(url).status_code == status, user
        assert client.get(f"{url}progress/").status_code == status, user
    client.logout()
    assert client.get(url).status_code == 302


# -- Sync log ----------------------------------------------------------------------------

def make_log(world, lead, outcome, **fields):
    return SyncLog.objects.create(integration=world.integration, lead=lead, outcome=outcome,
                                  **fields)


def test_sync_log_shows_path_fields_message(world, client):
    make_log(world, world.member_lead, SyncLog.Outcome.UPDATED,
             path=["lead found by email", "lead updated"],
             details={"fields": [{"column": "jobtitle", "old": "Clerk", "new": "Engineer",
                                  "mode": "overwrite"}]},
             message="Updated Dynamics lead.")
    client.force_login(world.admin)

    page = client.get(f"/integrations/sync/log/{world.integration.pk}/").content.decode()

    assert "<li>lead found by email</li><li>lead updated</li>" in page
    assert "<td>jobtitle</td><td>Clerk</td><td>Engineer</td>" in page
    assert "Updated Dynamics lead." in page
    assert 'class="retry-lead"' not in page


def test_sync_log_filters_by_outcome(world, client):
    make_log(world, world.member_lead, SyncLog.Outcome.CREATED, message="made it")
    make_log(world, world.admin_lead, SyncLog.Outcome.FAILED, message="broke it")
    client.force_login(world.admin)
    url = f"/integrations/sync/log/{world.integration.pk}/"

    failed_page = client.get(url, {"outcome": "failed"}).content.decode()
    unknown_page = client.get(url, {"outcome": "bogus"}).content.decode()

    assert "broke it" in failed_page
    assert "made it" not in failed_page
    assert 'class="retry-lead"' in failed_page
    assert "made it" in unknown_page
    assert "broke it" in unknown_page


def test_sync_log_pages_keep_filter(world, client):
    for index in range(sync_views.LOG_PAGE_SIZE + 1):
        make_log(world, world.admin_lead, SyncLog.Outcome.FAILED, message=f"broke {index}")
    make_log(world, world.member_lead, SyncLog.Outcome.CREATED, message="made it")
    client.force_login(world.admin)
    url = f"/integrations/sync/log/{world.integration.pk}/"

    first = client.get(url, {"outcome": "failed"}).content.decode()
    second = client.get(url, {"outcome": "failed", "page": 2}).content.decode()

    assert '<a href="?outcome=failed&amp;page=2">Older</a>' in first
    assert "Page 1 of 2" in first
    assert '<a href="?outcome=failed&amp;page=1">Newer</a>' in second
    assert "broke 0" in second
    assert "made it" not in second


def test_sync_log_retry_one_lead(world, client, django_capture_on_commit_callbacks):
    Lead.objects.filter(pk=world.member_lead.pk).update(sync_status=Lead.SyncStatus.FAILED)
    client.force_login(world.admin)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/integrations/sync/log/{world.integration.pk}/retry/",
                               {"lead": world.member_lead.pk})

    job = SyncJob.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/integrations/sync/jobs/{job.pk}/"
    assert queued_lead_ids() == [world.member_lead.pk]


def test_sync_log_retry_other_team_lead_not_found(world, client):
    client.force_login(world.admin)
    response = client.post(f"/integrations/sync/log/{world.integration.pk}/retry/",
                           {"lead": world.other_lead.pk})
    assert response.status_code == 404


def test_sync_log_retry_all_failed(world, client, django_capture_on_commit_callbacks):
    failed = [world.member_lead, world.subteam_lead]
    Lead.objects.filter(pk__in=[lead.pk for lead in failed]).update(
        sync_status=Lead.SyncStatus.FAILED)
    client.force_login(world.admin)

    page = client.get(f"/integrations/sync/log/{world.integration.pk}/").content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            f"/integrations/sync/log/{world.integration.pk}/retry-failed/", follow=True)

    assert 'value="Retry all failed (2)"' in page
    assert "Queued 2 lead(s)" in response.content.decode()
    assert sorted(queued_lead_ids()) == sorted(lead.pk for lead in failed)
    assert SyncJob.objects.get().lead_ids == [lead.pk for lead in failed]


def test_subteam_admin_sees_subteam_log_only(world, client):
    subteam_integration = Integration.objects.create(
        team=world.team, subteam=world.subteam, org_url="https://org.example",
        status=Integration.Status.CONNECTED)
    client.force_login(world.subteam_admin)

    assert client.get(f"/integrations/sync/log/{subteam_integration.pk}/").status_code == 200
    assert client.get(f"/integrations/sync/log/{world.integration.pk}/").status_code == 403


# -- Admin entry points ------------------------------------------------------------------

def test_admin_action_redirects_to_job(world, client, django_capture_on_commit_callbacks):
    client.force_login(world.admin)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/admin/leads/lead/", {
            "action": "sync_to_dynamics",
            "_selected_action": [world.member_lead.pk, world.admin_lead.pk],
        })

    job = SyncJob.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/integrations/sync/jobs/{job.pk}/"
    assert sorted(job.lead_ids) == sorted([world.member_lead.pk, world.admin_lead.pk])


def test_admin_change_page_sync_button(world, client, django_capture_on_commit_callbacks):
    lead = world.member_lead
    client.force_login(world.admin)
    change_url = reverse("admin:leads_lead_change", args=[lead.pk])
    change_page = client.get(change_url)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(change_url, {"email": lead.email, "job_title": "Engineer",
                                             "_sync": "1"})

    job = SyncJob.objects.get()
    lead.refresh_from_db()
    page = change_page.content.decode()
    assert 'value="Save and sync to Dynamics" name="_sync"' in page
    # Enter submits the first button of the form, which must stay the plain Save.
    assert page.index('name="_save"') < page.index('name="_sync"')
    assert response["Location"] == f"/integrations/sync/jobs/{job.pk}/"
    assert lead.job_title == "Engineer"
    assert queued_lead_ids() == [lead.pk]
    job_page = client.get(response["Location"]).content.decode()
    assert f"The lead “{lead}” was saved." in job_page


def test_admin_save_does_not_sync(world, client):
    lead = world.member_lead
    client.force_login(world.admin)

    response = client.post(reverse("admin:leads_lead_change", args=[lead.pk]),
                           {"email": lead.email, "job_title": "Engineer"})

    lead.refresh_from_db()
    assert response.status_code == 302
    assert lead.job_title == "Engineer"
    assert not SyncJob.objects.exists()
    assert queued_lead_ids() == []


def test_admin_sync_hides_other_teams(world, client):
    client.force_login(world.other_admin)

    response = client.post(reverse("admin:leads_lead_change", args=[world.member_lead.pk]),
                           {"email": world.member_lead.email, "_sync": "1"})

    assert response.status_code in (302, 404)
    assert not SyncJob.objects.exists()
    assert queued_lead_ids() == []
