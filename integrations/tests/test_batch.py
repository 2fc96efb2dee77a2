"""The client's $batch support against the sandbox."""

import uuid

import pytest

from integrations import connection
from integrations.client import ChangeSet, Operation, errors, error_from_result
from integrations.client.odata import literal

from .conftest import unique_email

pytestmark = pytest.mark.django_db


@pytest.fixture
def client(connected_team):
    return connection.client_for(connected_team.integration)


def test_batch_of_reads_is_one_request(client):
    email = unique_email("batch-read")
    client.create("leads", {"lastname": "Batch", "emailaddress1": email})
    before = client.request_count

    results = client.batch([
        Operation("GET", "leads", params={"$select": "leadid",
                                          "$filter": f"emailaddress1 eq {literal(email)}"}),
        Operation("GET", "WhoAmI"),
        Operation("GET", "leads(00000000-0000-4000-8000-0000000000ff)"),
    ])

    assert client.request_count - before == 1
    assert [result.status for result in results] == [200, 200, 404]
    assert len(results[0].body["value"]) == 1
    assert "UserId" in results[1].body


def test_change_set_creates_with_ids(client, sandbox):
    lead_id = str(uuid.uuid4())
    account_id = str(uuid.uuid4())
    results = client.batch([ChangeSet([
        Operation("POST", "accounts", {"accountid": account_id, "name": "Batch Co"}),
        Operation("POST", "leads", {"leadid": lead_id, "lastname": "Batch",
                                    "parentaccountid@odata.bind": f"/accounts({account_id})"}),
    ])])
    assert [result.status for result in results] == [204, 204]
    assert sandbox.store.get("lead", lead_id)["_parentaccountid_value"] == account_id


def test_failed_change_set_rolls_back(client, sandbox):
    email = unique_email("rollback")
    results = client.batch([ChangeSet([
        Operation("POST", "accounts", {"name": f"Rolled back {email}"}),
        Operation("POST", "leads", {"lastname": "X" * 60, "emailaddress1": email}),
    ])])
    error = error_from_result(results[1])
    assert len(results) == 2
    assert not results[0].ok
    assert isinstance(error, errors.ValidationFailed)
    assert "lastname" in error.message
    assert not [row for row in sandbox.store.records("account")
                if row.get("name") == f"Rolled back {email}"]


def test_continue_on_error_runs_every_part(client, sandbox):
    good = unique_email("good")
    results = client.batch([
        ChangeSet([Operation("POST", "leads", {"lastname": "Y" * 60})]),
        ChangeSet([Operation("POST", "leads", {"lastname": "Good", "emailaddress1": good})]),
    ])
    assert [result.ok for result in results] == [False, True]
    assert [row for row in sandbox.store.records("lead") if row.get("emailaddress1") == good]


def test_operation_limit_enforced(client):
    with pytest.raises(ValueError):
        client.batch([Operation("GET", "WhoAmI")] * 1001)


def test_change_set_content_id_reference(client, sandbox):
    """A later request binds to a record created earlier in the change set by $n."""
    name = f"Referenced {uuid.uuid4()}"
    results = client.batch([ChangeSet([
        Operation("POST", "accounts", {"name": name}),
        Operation("POST", "leads", {"lastname": "Ref", "parentaccountid@odata.bind": "$1"}),
    ])])
    account = next(row for row in sandbox.store.records("account") if row["name"] == name)
    lead_id = results[1].headers["odata-entityid"].rsplit("(", 1)[1].rstrip(")")
    assert [result.status for result in results] == [204, 204]
    assert sandbox.store.get("lead", lead_id)["_parentaccountid_value"] == account["accountid"]


def test_all_rows_follows_next_link(client):
    tag = uuid.uuid4().hex[:12]
    for index in range(5):
        client.create("leads", {"lastname": f"Page {tag} {index}"})
    first = client.request(
        "GET", "leads", params={"$select": "leadid",
                                "$filter": f"startswith(lastname,{literal('Page ' + tag)})"},
        headers={"Prefer": "odata.maxpagesize=2"},
    ).json()
    rows = client.all_rows(first)
    assert "@odata.nextLink" in first
    assert len(first["value"]) == 2
    assert len(rows) == 5


def test_next_link_to_other_host_not_followed(client, sandbox):
    sandbox.store.clear_request_log()
    page = {"value": [{"leadid": "1"}],
            "@odata.nextLink": "https://attacker.example/api/data/v9.2/leads?$skiptoken=x"}

    with pytest.raises(errors.DataverseError) as raised:
        client.all_rows(page)

    assert "attacker.example" in str(raised.value)
    assert client.request_count == 0
    assert sandbox.store.requests() == []


def test_next_link_to_other_port_not_followed(client):
    other = client.org_url.rsplit(":", 1)[0] + ":1/api/data/v9.2/leads?$skiptoken=x"

    with pytest.raises(errors.DataverseError):
        client.all_rows({"value": [], "@odata.nextLink": other})

    assert client.request_count == 0
