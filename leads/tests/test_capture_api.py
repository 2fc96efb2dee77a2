"""Retried, invalid and throttled captures through POST /api/leads/, and the schema."""

import threading

import pytest
from django.core.cache import cache
from django.db import connection
from django.urls import reverse
from drf_spectacular.validation import validate_schema
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from leads import services
from leads.models import Lead
from leads.services import capture_lead_once
from teams.tests.factories import make_member, make_team

pytestmark = pytest.mark.django_db

LIST_URL = reverse("leads:lead-list")
SCHEMA_URL = reverse("api-schema")


def api_client(user):
    client = APIClient()
    token, _ = Token.objects.get_or_create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


@pytest.fixture
def scheduled(monkeypatch):
    calls = []
    monkeypatch.setattr("leads.services.schedule_sync_for_new_lead", calls.append)
    return calls


def capture_once(two_teams, data, reference="ref-1"):
    return capture_lead_once(
        member=two_teams.member_a, team=two_teams.team_a, data=data,
        source=Lead.Source.CSV, client_reference=reference,
    )


def test_capture_once_creates_lead(two_teams, scheduled):
    lead, created = capture_once(two_teams, {"email": "ada@example.com"})

    assert created is True
    assert lead.client_reference == "ref-1"
    assert lead.source == Lead.Source.CSV
    assert scheduled == [lead]


def test_capture_once_returns_first_lead(two_teams, scheduled):
    first, _ = capture_once(two_teams, {"email": "ada@example.com"})

    again, created = capture_once(two_teams, {"email": "other@example.com"})

    assert created is False
    assert again == first
    assert again.email == "ada@example.com"
    assert scheduled == [first]


def test_capture_once_requires_reference(two_teams, scheduled):
    with pytest.raises(ValueError):
        capture_once(two_teams, {"email": "ada@example.com"}, reference="")


def test_capture_once_race_returns_winner(two_teams, scheduled, monkeypatch):
    # The lookup misses, as it does for the second of two concurrent requests, so the
    # insert hits the unique constraint and the winner is read back.
    winner, _ = capture_once(two_teams, {"email": "ada@example.com"})
    lookups = iter([None])
    real_lookup = services.find_lead_by_reference
    monkeypatch.setattr(
        services, "find_lead_by_reference",
        lambda member, reference: next(lookups, None) or real_lookup(member, reference),
    )

    lead, created = capture_once(two_teams, {"email": "late@example.com"})

    assert created is False
    assert lead == winner
    assert Lead.objects.filter(client_reference="ref-1").count() == 1


# Idempotent capture through the API


def post_lead(client, body, **headers):
    return client.post(LIST_URL, body, format="json", headers=headers)


@pytest.fixture
def member_client(two_teams, scheduled):
    return api_client(two_teams.member_a)


def test_retry_with_client_id_returns_first(member_client):
    first = post_lead(member_client, {"client_id": "c-1", "email": "ada@example.com"})

    again = post_lead(member_client, {"client_id": "c-1", "email": "ada@example.com"})

    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["client_id"] == "c-1"
    assert Lead.objects.filter(client_reference="c-1").count() == 1


def test_retry_with_header_returns_first(member_client):
    first = post_lead(member_client, {"email": "ada@example.com"}, **{"Idempotency-Key": "k-1"})

    again = post_lead(member_client, {"email": "ada@example.com"}, **{"Idempotency-Key": "k-1"})

    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert first.json()["client_id"] == "k-1"
    assert Lead.objects.filter(client_reference="k-1").count() == 1


def test_retry_first_body_wins(member_client):
    post_lead(member_client, {"client_id": "c-1", "company": "First"})

    again = post_lead(member_client, {"client_id": "c-1", "company": "Second"})

    assert again.status_code == 200
    assert again.json()["company"] == "First"
    assert not Lead.objects.filter(company="Second").exists()


def test_retry_with_invalid_body_returns_first(member_client):
    post_lead(member_client, {"client_id": "c-1", "company": "First"})

    again = post_lead(member_client, {"client_id": "c-1", "email": "not an email"})

    assert again.status_code == 200
    assert again.json()["company"] == "First"


def test_client_id_and_header_same_value(member_client):
    first = post_lead(member_client, {"client_id": "c-1", "company": "First"})

    again = post_lead(member_client, {"company": "Second"}, **{"Idempotency-Key": "c-1"})

    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]


def test_client_id_and_header_differ(member_client):
    response = post_lead(
        member_client, {"client_id": "c-1", "company": "Acme"}, **{"Idempotency-Key": "k-2"}
    )

    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()["client_id"][0]
    assert not Lead.objects.filter(company="Acme").exists()


def test_same_key_other_members_separate(two_teams, scheduled):
    first = post_lead(api_client(two_teams.member_a), {"client_id": "c-1", "company": "A"})

    second = post_lead(api_client(two_teams.member_b), {"client_id": "c-1", "company": "B"})

    assert first.status_code == 201
    assert second.status_code == 201
    assert second.json()["id"] != first.json()["id"]
    assert second.json()["company"] == "B"


def test_without_reference_creates_each_time(member_client):
    first = post_lead(member_client, {"company": "Acme"})
    second = post_lead(member_client, {"company": "Acme"})

    assert first.status_code == 201
    assert second.status_code == 201
    assert first.json()["client_id"] == ""
    assert Lead.objects.filter(company="Acme").count() == 2


def test_capture_source_is_api(member_client):
    response = post_lead(member_client, {"company": "Acme"})

    assert response.json()["source"] == "api"


@pytest.mark.django_db(transaction=True)
def test_concurrent_retries_create_one(scheduled, monkeypatch):
    member = make_member(make_team())
    clients = [api_client(member), api_client(member)]
    barrier = threading.Barrier(len(clients))
    lookups_per_thread = {}
    real_lookup = services.find_lead_by_reference

    def lookup_missing_until_both_insert(member, reference):
        # Each request looks up the reference twice (in the view and in the service)
        # before its insert. Both miss, and the threads meet before inserting, so both
        # inserts run and the unique constraint has to decide.
        thread = threading.current_thread()
        lookups_per_thread[thread] = lookups_per_thread.get(thread, 0) + 1
        if lookups_per_thread[thread] == 1:
            return None
        if lookups_per_thread[thread] == 2:
            barrier.wait(timeout=10)
            return None
        return real_lookup(member, reference)

    monkeypatch.setattr("leads.api.find_lead_by_reference", lookup_missing_until_both_insert)
    monkeypatch.setattr(services, "find_lead_by_reference", lookup_missing_until_both_insert)
    statuses = []
    ids = []

    def send(client):
        try:
            response = post_lead(client, {"client_id": "same", "company": "Acme"})
            statuses.append(response.status_code)
            ids.append(response.json()["id"])
        finally:
            connection.close()

    threads = [threading.Thread(target=send, args=(client,)) for client in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert sorted(statuses) == [200, 201]
    assert ids[0] == ids[1]
    assert Lead.objects.filter(captured_by=member).count() == 1


# Validation


@pytest.mark.parametrize("email", ["ada@", "ada@@example.com", "ada lovelace@example.com",
                                   "@example.com", "ada@example", "üser@example.com"])
def test_invalid_email_named(member_client, email):
    response = post_lead(member_client, {"company": "Acme", "email": email})

    assert response.status_code == 400
    assert "Invalid email address" in response.json()["email"][0]
    assert not Lead.objects.filter(company="Acme").exists()


def test_email_normalized_keeps_local_case(member_client):
    response = post_lead(member_client, {"email": "  Ada.Lovelace@EXAMPLE.Org "})

    assert response.status_code == 201
    assert response.json()["email"] == "Ada.Lovelace@example.org"


def test_email_international_domain(member_client):
    response = post_lead(member_client, {"email": "ada@bücher.example"})

    assert response.status_code == 201
    assert response.json()["email"] == "ada@bücher.example"


@pytest.mark.parametrize("field", ["first_name", "company", "phone", "mobile_phone",
                                   "city", "client_id"])
@pytest.mark.parametrize("character", ["\x00", "\x07", "\x1b", "\x7f", "\x85", "\n", "\t"])
def test_control_character_named(member_client, field, character):
    body = {"last_name": "Lovelace", field: f"Ada{character}Acme"}

    response = post_lead(member_client, body)

    assert response.status_code == 400
    assert f"U+{ord(character):04X}" in response.json()[field][0]
    assert not Lead.objects.filter(last_name="Lovelace").exists()


def test_notes_keep_line_breaks(member_client):
    response = post_lead(member_client, {"company": "Acme", "notes": "Met at booth.\r\n\tDemo"})

    assert response.status_code == 201
    assert response.json()["notes"] == "Met at booth.\r\n\tDemo"


def test_notes_reject_nul(member_client):
    response = post_lead(member_client, {"company": "Acme", "notes": "Met\x00"})

    assert response.status_code == 400
    assert "U+0000" in response.json()["notes"][0]


@pytest.mark.parametrize(("field", "limit"), [
    ("first_name", 100), ("phone", 50), ("street", 250), ("postal_code", 20),
    ("website", 300), ("client_id", 200), ("email", 254),
])
def test_overlong_named_with_limit(member_client, field, limit):
    response = post_lead(member_client, {"company": "Acme", field: "x" * (limit + 1)})

    assert response.status_code == 400
    assert str(limit) in response.json()[field][0]


def test_overlong_header_named(member_client):
    response = post_lead(member_client, {"company": "Acme"}, **{"Idempotency-Key": "k" * 201})

    assert response.status_code == 400
    assert "200" in response.json()["Idempotency-Key"][0]


def test_binary_json_body_rejected(member_client):
    response = member_client.post(
        LIST_URL, b"\xff\xfe\x00\x81junk{", content_type="application/json"
    )

    assert response.status_code == 400
    assert "detail" in response.json()


def test_binary_form_body_rejected(member_client):
    response = member_client.post(
        LIST_URL, b"company=Acme\xff\xfe&last_name=Lovelace",
        content_type="application/x-www-form-urlencoded",
    )

    assert response.status_code == 400
    assert "not valid utf-8" in response.json()["detail"]


def test_percent_encoded_junk_named(member_client):
    response = member_client.post(
        LIST_URL, b"company=Acme%FF%FE&last_name=Lovelace",
        content_type="application/x-www-form-urlencoded",
    )

    assert response.status_code == 400
    assert "UTF-8" in response.json()["company"][0]


def test_binary_multipart_field_named(member_client):
    body = (
        b"--BOUNDARY\r\n"
        b'Content-Disposition: form-data; name="company"\r\n\r\n'
        b"Acme\xff\xfe\r\n"
        b"--BOUNDARY--\r\n"
    )

    response = member_client.post(
        LIST_URL, body, content_type="multipart/form-data; boundary=BOUNDARY"
    )

    assert response.status_code == 400
    assert "UTF-8" in response.json()["company"][0]


def test_unparseable_phone_kept(member_client):
    response = post_lead(member_client, {"company": "Acme", "phone": "  ask at booth 12 "})

    assert response.status_code == 201
    assert response.json()["phone"] == "ask at booth 12"
    assert response.json()["phone_e164"] == ""
    assert Lead.objects.get(company="Acme").phone == "ask at booth 12"


def test_phone_read_in_team_region(two_teams, scheduled):
    two_teams.team_a.default_phone_region = "GB"
    two_teams.team_a.save()

    response = post_lead(
        api_client(two_teams.member_a), {"phone": "020 7946 0018", "mobile_phone": "07700 900123"}
    )

    assert response.status_code == 201
    assert response.json()["phone"] == "020 7946 0018"
    assert response.json()["phone_e164"] == "+442079460018"
    assert response.json()["mobile_phone_e164"] == "+447700900123"


def test_address_fields_accepted(member_client):
    body = {
        "company": "Acme", "mobile_phone": "+1 201 555 0143", "street": "1 Main St",
        "city": "Springfield", "postal_code": "12345", "region": "IL", "country": "US",
    }

    response = post_lead(member_client, body)

    assert response.status_code == 201
    lead = Lead.objects.get(company="Acme")
    for field, value in body.items():
        assert getattr(lead, field) == value, field


# Throttling


@pytest.fixture
def capture_rate(settings):
    cache.clear()
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"capture": "2/min"},
    }
    yield
    cache.clear()


def test_throttle_returns_429(member_client, capture_rate):
    statuses = [post_lead(member_client, {"company": "Acme"}).status_code for _ in range(3)]

    assert statuses == [201, 201, 429]


def test_throttle_sets_retry_after(member_client, capture_rate):
    for _ in range(2):
        post_lead(member_client, {"company": "Acme"})

    response = post_lead(member_client, {"company": "Acme"})

    assert response.status_code == 429
    assert 0 < int(response.headers["Retry-After"]) <= 61
    assert "this lead was not saved. Send it again" in response.json()["detail"]


def test_throttle_per_member(two_teams, scheduled, capture_rate):
    for _ in range(2):
        post_lead(api_client(two_teams.member_a), {"company": "Acme"})

    response = post_lead(api_client(two_teams.member_b), {"company": "Bolt"})

    assert response.status_code == 201


def test_throttle_skips_reads(member_client, capture_rate):
    for _ in range(2):
        post_lead(member_client, {"company": "Acme"})

    response = member_client.get(LIST_URL)

    assert response.status_code == 200


def test_anonymous_capture_401(two_teams, capture_rate):
    response = post_lead(APIClient(), {"company": "Acme"})

    assert response.status_code == 401


# OpenAPI schema


def test_schema_valid_openapi(member_client):
    response = member_client.get(SCHEMA_URL, {"format": "json"})

    assert response.status_code == 200
    validate_schema(response.json())


def test_schema_lists_capture_fields(member_client):
    schema = member_client.get(SCHEMA_URL, {"format": "json"}).json()

    assert "/api/leads/" in schema["paths"]
    properties = schema["components"]["schemas"]["Lead"]["properties"]
    for field in ["client_id", "email", "phone", "mobile_phone", "street", "city",
                  "postal_code", "region", "country", "phone_e164", "sync_status"]:
        assert field in properties, field


def test_schema_create_responses(member_client):
    schema = member_client.get(SCHEMA_URL, {"format": "json"}).json()

    responses = schema["paths"]["/api/leads/"]["post"]["responses"]
    assert set(responses) == {"200", "201", "400", "401", "403", "429"}


def test_schema_yaml_by_default(member_client):
    response = member_client.get(SCHEMA_URL)

    assert response.status_code == 200
    assert response.content.startswith(b"openapi: 3.")


def test_mobile_only_lead_accepted(member_client):
    response = member_client.post("/api/leads/", {"mobile_phone": "+33 6 12 34 56 78"},
                                  format="json")
    assert response.status_code == 201
