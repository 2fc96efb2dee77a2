import pytest
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from leads.models import Lead
from teams.tests.factories import make_lead, make_member, make_user

pytestmark = pytest.mark.django_db

LIST_URL = reverse("leads:lead-list")


def detail_url(lead):
    return reverse("leads:lead-detail", args=[lead.pk])


def api_client(user=None):
    client = APIClient()
    if user is not None:
        token = Token.objects.create(user=user)
        client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


@pytest.fixture
def scheduled(monkeypatch):
    calls = []
    monkeypatch.setattr("leads.services.schedule_sync_for_new_lead", calls.append)
    return calls


@pytest.fixture
def member_client(two_teams, scheduled):
    return api_client(two_teams.member_a)


def test_create_returns_201(member_client, two_teams, scheduled):
    response = member_client.post(
        LIST_URL,
        {"first_name": "Ada", "email": "ada@example.com", "company": "Analytical"},
        format="json",
    )

    assert response.status_code == 201
    body = response.json()
    lead = Lead.objects.get(pk=body["id"])
    assert lead.captured_by == two_teams.member_a
    assert body["team"] == two_teams.team_a.pk
    assert body["email"] == "ada@example.com"
    assert body["sync_status"] == "pending"
    assert body["dynamics_entity"] == ""
    assert body["dynamics_record_id"] == ""
    assert body["last_sync_error"] == ""
    assert body["last_synced_at"] is None
    assert body["captured_at"]
    assert scheduled == [lead]


def test_create_ignores_sync_fields(member_client):
    response = member_client.post(
        LIST_URL,
        {"phone": "+1 555 0100", "sync_status": "synced", "dynamics_record_id": "forged"},
        format="json",
    )

    assert response.status_code == 201
    assert response.json()["sync_status"] == "pending"
    assert response.json()["dynamics_record_id"] == ""


def test_create_form_encoded(member_client):
    response = member_client.post(LIST_URL, {"company": "Acme"})

    assert response.status_code == 201


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"email": "not-an-email"}, "email"),
        ({"first_name": "x" * 101}, "first_name"),
        ({"last_name": "x" * 101}, "last_name"),
        ({"phone": "1" * 51}, "phone"),
        ({"company": "x" * 201}, "company"),
        ({"company": "Acme", "job_title": "x" * 201}, "job_title"),
        ({"company": "Acme", "website": "x" * 301}, "website"),
        ({"email": "x" * 250 + "@example.com"}, "email"),
        ({"emial": "ada@example.com", "company": "Acme"}, "emial"),
        ({"company": "Acme", "team": 999999}, "team"),
    ],
)
def test_create_invalid_field(member_client, payload, field):
    response = member_client.post(LIST_URL, payload, format="json")

    assert response.status_code == 400
    assert field in response.json()
    assert not Lead.objects.filter(company="Acme").exists()


def test_create_unknown_field_message(member_client):
    response = member_client.post(LIST_URL, {"emial": "ada@example.com"}, format="json")

    assert "Unknown field" in response.json()["emial"][0]
    assert "email" in response.json()["emial"][0]


@pytest.mark.parametrize(
    "payload",
    [{}, {"first_name": "", "email": "", "phone": "   "}, {"job_title": "CTO", "notes": "met"}],
)
def test_create_without_identity(member_client, payload):
    response = member_client.post(LIST_URL, payload, format="json")

    assert response.status_code == 400
    message = response.json()["non_field_errors"][0]
    assert "at least one of first_name, last_name, email, phone, mobile_phone or company" in message


def test_create_non_object_body(member_client):
    response = member_client.post(LIST_URL, ["company", "Acme"], format="json")

    assert response.status_code == 400


def test_create_without_token(two_teams):
    response = api_client().post(LIST_URL, {"company": "Acme"}, format="json")

    assert response.status_code == 401


def test_create_bad_token(two_teams):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")

    response = client.post(LIST_URL, {"company": "Acme"}, format="json")

    assert response.status_code == 401


def test_create_no_team_403(scheduled):
    response = api_client(make_user()).post(LIST_URL, {"company": "Acme"}, format="json")

    assert response.status_code == 403
    assert "not a member of any team" in response.json()["detail"]


def test_create_several_teams_requires_team(two_teams, scheduled):
    make_member(two_teams.team_b, two_teams.member_a)
    client = api_client(two_teams.member_a)

    response = client.post(LIST_URL, {"company": "Acme"}, format="json")

    assert response.status_code == 400
    assert "several teams" in response.json()["team"][0]


def test_create_several_teams_named(two_teams, scheduled):
    make_member(two_teams.team_b, two_teams.member_a)
    client = api_client(two_teams.member_a)

    response = client.post(
        LIST_URL, {"company": "Acme", "team": two_teams.team_b.pk}, format="json"
    )

    assert response.status_code == 201
    assert response.json()["team"] == two_teams.team_b.pk


def test_create_other_team_rejected(member_client, two_teams):
    response = member_client.post(
        LIST_URL, {"company": "Acme", "team": two_teams.team_b.pk}, format="json"
    )

    assert response.status_code == 400
    assert "not a member of team" in response.json()["team"][0]


def test_list_own_leads(member_client, two_teams):
    own_lead = make_lead(two_teams.team_a, two_teams.member_a)
    make_lead(two_teams.team_a, two_teams.admin_a)

    response = member_client.get(LIST_URL)

    assert response.status_code == 200
    ids = [lead["id"] for lead in response.json()["results"]]
    assert ids == [own_lead.pk, two_teams.lead_a.pk]
    assert response.json()["count"] == 2


def test_list_without_team(two_teams):
    response = api_client(make_user()).get(LIST_URL)

    assert response.status_code == 200
    assert response.json()["results"] == []


def test_list_without_token(two_teams):
    response = api_client().get(LIST_URL)

    assert response.status_code == 401


def test_list_page_size(member_client, two_teams):
    for _ in range(3):
        make_lead(two_teams.team_a, two_teams.member_a)

    response = member_client.get(LIST_URL, {"page_size": 2})

    assert len(response.json()["results"]) == 2
    assert response.json()["next"] is not None


def test_detail_own_lead(member_client, two_teams):
    response = member_client.get(detail_url(two_teams.lead_a))

    assert response.status_code == 200
    assert response.json()["company"] == "Acme A"


def test_detail_other_users_lead_404(member_client, two_teams):
    teammate_lead = make_lead(two_teams.team_a, two_teams.admin_a)

    response = member_client.get(detail_url(teammate_lead))

    assert response.status_code == 404


def test_detail_other_team_lead_404(member_client, two_teams):
    response = member_client.get(detail_url(two_teams.lead_b))

    assert response.status_code == 404


@pytest.mark.parametrize("method", ["put", "patch", "delete"])
def test_detail_write_not_allowed(member_client, two_teams, method):
    response = getattr(member_client, method)(detail_url(two_teams.lead_a), {}, format="json")

    assert response.status_code == 405


def test_create_session_form_with_csrf_token(two_teams, scheduled):
    client = APIClient(enforce_csrf_checks=False)
    client.force_login(two_teams.member_a)

    response = client.post(LIST_URL, {"company": "Acme", "csrfmiddlewaretoken": "x"})

    assert response.status_code == 201


def test_deeply_nested_json_rejected(member_client):
    client = member_client
    body = "[" * 100000 + "]" * 100000
    response = client.post("/api/leads/", body, content_type="application/json")
    assert response.status_code == 400


@pytest.mark.parametrize("website", ["javascript:alert(1)", "data:text/html,hi", "ftp://x.org"])
def test_website_scheme_rejected(member_client, website):
    client = member_client
    response = client.post("/api/leads/", {"last_name": "Web", "website": website},
                           format="json")
    assert response.status_code == 400
    assert "website" in response.json()


@pytest.mark.parametrize("website", ["example.com", "https://example.com/x",
                                     "www.example.com:8080", "HTTP://EXAMPLE.COM"])
def test_website_forms_accepted(member_client, website):
    client = member_client
    response = client.post("/api/leads/", {"last_name": "Web", "website": website},
                           format="json")
    assert response.status_code == 201


def test_missing_and_foreign_team_same_answer(member_client):
    from teams.tests.factories import make_team

    client = member_client
    other = make_team()
    missing = client.post("/api/leads/", {"last_name": "T", "team": 999999}, format="json")
    foreign = client.post("/api/leads/", {"last_name": "T", "team": other.pk}, format="json")
    assert missing.status_code == foreign.status_code == 400
    assert "not a member of team 999999" in missing.json()["team"][0]
    assert f"not a member of team {other.pk}" in foreign.json()["team"][0]
