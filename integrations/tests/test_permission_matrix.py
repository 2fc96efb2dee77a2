"""Who reaches which page, action and API endpoint, role by role.

Every row names a request on team A's rows and the status each role gets. Roles: the
team admin of A, a subteam admin of A (whose subteam does not contain `member`), a member
of A, a member and an admin of team B, and an anonymous visitor. Team B's users must get
404 (or the admin's login redirect) for every row of team A, and no request of theirs may
queue a lead of team A.
"""

import pytest
from django.urls import reverse

from integrations import jobs
from integrations.models import Integration, SyncJob, SyncLog
from leads.models import Lead

from .test_manual_sync import World, unique_email

pytestmark = pytest.mark.django_db

ROLES = ("team_admin", "subteam_admin", "member", "other_member", "other_admin", "anonymous")
OTHER_TEAM_ROLES = ("other_member", "other_admin", "anonymous")

LOGIN = "/admin/login/"
JOB = "/integrations/sync/jobs/"


class MatrixWorld(World):
    """World plus a subteam integration, a failed sync log entry and a member's job."""

    def __init__(self):
        super().__init__()
        self.subteam_integration = Integration.objects.create(
            team=self.team, subteam=self.subteam, org_url="https://org.example",
            status=Integration.Status.CONNECTED,
        )
        self.log = SyncLog.objects.create(
            integration=self.integration, lead=self.member_lead,
            outcome=SyncLog.Outcome.FAILED, message="Dynamics rejected the lead's data.")
        Lead.objects.filter(pk=self.member_lead.pk).update(sync_status=Lead.SyncStatus.FAILED)
        self.job = jobs.start_sync(self.member, [self.member_lead]).job
        # The job is a fixture row: leave its lead failed, as if the job had ended.
        Lead.objects.filter(pk=self.member_lead.pk).update(sync_status=Lead.SyncStatus.FAILED)

    def user(self, role):
        return {
            "team_admin": self.admin, "subteam_admin": self.subteam_admin,
            "member": self.member, "other_member": self.other_member,
            "other_admin": self.other_admin,
        }.get(role)

    def url_values(self):
        return {
            "team": self.team.pk, "member_lead": self.member_lead.pk,
            "subteam_lead": self.subteam_lead.pk, "integration": self.integration.pk,
            "subteam_integration": self.subteam_integration.pk, "log": self.log.pk,
            "job": self.job.pk,
        }


def expect(team_admin, subteam_admin, member, other_member, other_admin, anonymous):
    return dict(zip(ROLES, (team_admin, subteam_admin, member, other_member, other_admin,
                            anonymous), strict=True))


# Each expected result is a status, or (status, start of the redirect's Location).
ADMIN_LIST = expect(200, (302, LOGIN), (302, LOGIN), (302, LOGIN), 200, (302, LOGIN))
ADMIN_ROW = expect(200, (302, LOGIN), (302, LOGIN), (302, LOGIN), 404, (302, LOGIN))
SIGNED_IN = expect(200, 200, 200, 200, 200, (302, LOGIN))
MEMBER_LOGIN = "/leads/login/"

# (row name, method, URL, body or None, expected by role)
MATRIX = [
    ("admin team list", "get", "/admin/teams/team/", None, ADMIN_LIST),
    ("admin team page", "get", "/admin/teams/team/{team}/change/", None, ADMIN_ROW),
    ("admin lead list", "get", "/admin/leads/lead/", None, ADMIN_LIST),
    ("admin lead page", "get", "/admin/leads/lead/{member_lead}/change/", None, ADMIN_ROW),
    ("admin integration list", "get", "/admin/integrations/integration/", None, ADMIN_LIST),
    ("admin integration page", "get", "/admin/integrations/integration/{integration}/change/",
     None, ADMIN_ROW),
    ("admin sync log list", "get", "/admin/integrations/synclog/", None, ADMIN_LIST),
    ("admin sync log page", "get", "/admin/integrations/synclog/{log}/change/", None,
     ADMIN_ROW),
    ("admin sync action", "post", "/admin/leads/lead/",
     {"action": "sync_to_dynamics", "_selected_action": ["{member_lead}"]},
     expect((302, JOB), (302, LOGIN), (302, LOGIN), (302, LOGIN),
            (302, "/admin/leads/lead/"), (302, LOGIN))),
    # Only the status: the Sync Settings page's content has tests of its own.
    ("sync settings page", "get", "/integrations/settings/", None, SIGNED_IN),
    ("sync preview", "get", "/integrations/leads/{member_lead}/preview/", None,
     expect(200, 404, 404, 404, 404, (302, LOGIN))),
    ("sync log, full team", "get", "/integrations/sync/log/{integration}/", None,
     expect(200, 403, 403, 404, 404, (302, LOGIN))),
    ("sync log, subteam", "get", "/integrations/sync/log/{subteam_integration}/", None,
     expect(200, 200, 403, 404, 404, (302, LOGIN))),
    ("sync log retry", "post", "/integrations/sync/log/{integration}/retry/",
     {"lead": "{member_lead}"}, expect((302, JOB), 403, 403, 404, 404, (302, LOGIN))),
    ("sync log retry all", "post", "/integrations/sync/log/{integration}/retry-failed/", None,
     expect((302, JOB), 403, 403, 404, 404, (302, LOGIN))),
    ("job page", "get", "/integrations/sync/jobs/{job}/", None,
     expect(200, 403, 200, 404, 404, (302, LOGIN))),
    ("job progress", "get", "/integrations/sync/jobs/{job}/progress/", None,
     expect(200, 403, 200, 404, 404, (302, LOGIN))),
    ("my leads", "get", "/leads/mine/", None,
     expect(200, 200, 200, 200, 200, (302, MEMBER_LOGIN))),
    ("my leads sync", "post", "/leads/mine/{member_lead}/sync/", None,
     expect(404, 404, (302, "/leads/mine/"), 404, 404, (302, MEMBER_LOGIN))),
    ("api list", "get", "/api/leads/", None, expect(200, 200, 200, 200, 200, 401)),
    ("api detail", "get", "/api/leads/{member_lead}/", None,
     expect(404, 404, 200, 404, 404, 401)),
    ("api create", "post", "/api/leads/", {"email": "new@example.org"},
     expect(201, 201, 201, 201, 201, 401)),
    ("api sync member lead", "post", "/api/leads/{member_lead}/sync/", None,
     expect(202, 403, 202, 404, 404, 401)),
    ("api sync subteam lead", "post", "/api/leads/{subteam_lead}/sync/", None,
     expect(202, 202, 403, 404, 404, 401)),
    ("api sync many", "post", "/api/leads/sync/", {"ids": ["{member_lead}"]},
     expect(202, 202, 202, 202, 202, 401)),
]


def fill(value, values):
    """Put the world's ids into a URL template or a request body."""
    if isinstance(value, str):
        filled = value.format(**values)
        return int(filled) if value.startswith("{") and filled.isdigit() else filled
    if isinstance(value, list):
        return [fill(item, values) for item in value]
    if isinstance(value, dict):
        return {key: fill(item, values) for key, item in value.items()}
    return value


def send(client, method, url, body):
    if method == "get":
        return client.get(url)
    if url.startswith("/api/"):
        return client.post(url, body or {}, content_type="application/json")
    return client.post(url, body or {})


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("name", "method", "url", "body", "expected"), MATRIX,
                         ids=[row[0] for row in MATRIX])
def test_access(client, dynamics_settings, role, name, method, url, body, expected):
    world = MatrixWorld()
    values = world.url_values()
    user = world.user(role)
    if user is not None:
        client.force_login(user)
    jobs_before = SyncJob.objects.count()
    statuses_before = dict(Lead.objects.filter(team=world.team)
                           .values_list("pk", "sync_status"))

    response = send(client, method, fill(url, values), fill(body, values))

    status, location = expected[role] if isinstance(expected[role], tuple) else \
        (expected[role], None)
    assert response.status_code == status, response.content[:300]
    if location is not None:
        assert response["Location"].startswith(location), response["Location"]
    if role in OTHER_TEAM_ROLES:
        statuses_after = dict(Lead.objects.filter(team=world.team)
                              .values_list("pk", "sync_status"))
        assert statuses_after == statuses_before
        assert SyncJob.objects.count() == jobs_before


# Which lead each role may sync through the bulk API: True queued, False refused.
SYNC_MATRIX = {
    "member_lead": expect(True, False, True, False, False, None),
    "subteam_lead": expect(True, True, False, False, False, None),
    "admin_lead": expect(True, False, False, False, False, None),
    "other_lead": expect(False, False, False, True, True, None),
}


@pytest.mark.parametrize("role", ROLES[:-1])
@pytest.mark.parametrize("member_sync_allowed", [True, False])
def test_who_syncs_which_lead(client, role, member_sync_allowed):
    world = World(member_sync_allowed=member_sync_allowed)
    Integration.objects.create(team=world.other_team, org_url="https://org.example",
                               status=Integration.Status.CONNECTED)
    client.force_login(MatrixWorld.user(world, role))
    leads = {name: getattr(world, name) for name in SYNC_MATRIX}

    response = client.post("/api/leads/sync/", {"ids": [lead.pk for lead in leads.values()]},
                           content_type="application/json")

    queued = set(response.json()["queued"])
    for name, lead in leads.items():
        expected = SYNC_MATRIX[name][role]
        if name == "member_lead" and role == "member" and not member_sync_allowed:
            expected = False
        assert (lead.pk in queued) == expected, name


@pytest.mark.parametrize("url", [
    "/admin/leads/lead/", "/admin/integrations/synclog/",
    "/admin/integrations/integration/", "/admin/teams/team/",
])
def test_other_team_admin_sees_no_rows(client, url):
    world = MatrixWorld()
    client.force_login(world.other_admin)

    page = client.get(url).content.decode()

    assert world.member_lead.email not in page
    assert f"/change/{world.member_lead.pk}" not in page
    assert f">{world.team.name}<" not in page


def test_api_list_shows_only_own_leads(client):
    world = MatrixWorld()
    for user, own_lead in ((world.admin, world.admin_lead), (world.member, world.member_lead),
                           (world.other_member, world.other_lead)):
        client.force_login(user)
        ids = [row["id"] for row in client.get("/api/leads/").json()["results"]]
        assert ids == [own_lead.pk], user


def test_created_lead_lands_in_own_team(client):
    world = MatrixWorld()
    client.force_login(world.other_member)
    email = unique_email("matrix")

    response = client.post("/api/leads/", {"email": email, "team": world.team.pk},
                           content_type="application/json")

    assert response.status_code == 400
    assert not Lead.objects.filter(email=email).exists()


def test_matrix_covers_every_sync_url():
    from integrations import sync_urls
    from leads import page_urls

    covered = {row[2] for row in MATRIX}
    expected = {
        "/integrations/sync/jobs/{job}/", "/integrations/sync/jobs/{job}/progress/",
        "/integrations/sync/log/{integration}/", "/integrations/sync/log/{integration}/retry/",
        "/integrations/sync/log/{integration}/retry-failed/",
        "/leads/mine/",
        "/leads/mine/{member_lead}/sync/",
    }
    assert expected <= covered
    assert len(sync_urls.urlpatterns) == 5
    assert len(page_urls.urlpatterns) == 4
    assert reverse("sync:job", args=[1]) == "/integrations/sync/jobs/1/"
