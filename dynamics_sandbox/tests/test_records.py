"""Web API record conformance: create, retrieve, update, lookups, errors, privileges."""

import re
import uuid

import pytest

from dynamics_sandbox import seed
from dynamics_sandbox.conftest import Api
from dynamics_sandbox.testing import start_sandbox

LEAD_ID_HEADER = re.compile(r"^https://.+/api/data/v9\.2/leads\((?P<id>[0-9a-f-]{36})\)$")


def error_of(response):
    return response.json()["error"]


def test_create_returns_entity_id(sales_api, email):
    response = sales_api.post("leads", json={"lastname": "Lee", "emailaddress1": email})
    match = LEAD_ID_HEADER.match(response.headers["OData-EntityId"])
    assert response.status_code == 204
    assert match is not None
    assert response.content == b""
    assert sales_api.sandbox.store.get("lead", match.group("id"))["emailaddress1"] == email


def test_create_odata_headers(sales_api, email):
    response = sales_api.post(
        "leads", json={"lastname": "Lee", "emailaddress1": email},
        headers={"Prefer": "return=representation"},
    )
    assert response.headers["OData-Version"] == "4.0"
    assert response.headers["Content-Type"] == "application/json; odata.metadata=minimal"


def test_create_representation(sales_api, email):
    response = sales_api.post(
        "leads", json={"firstname": "Ann", "lastname": "Lee", "emailaddress1": email},
        headers={"Prefer": "return=representation"},
    )
    record = response.json()
    assert response.status_code == 201
    assert response.headers["Preference-Applied"] == "return=representation"
    assert "OData-EntityId" not in response.headers
    assert record["fullname"] == "Ann Lee"
    assert record["statecode"] == 0
    assert record["statuscode"] == 1
    assert record["_ownerid_value"] == seed.SAM_ID
    assert record["_createdby_value"] == seed.SAM_ID
    assert re.fullmatch(r'W/"\d+"', record["@odata.etag"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", record["createdon"])
    assert record["modifiedon"] == record["createdon"]


def test_create_client_id(sales_api, email):
    lead_id = str(uuid.uuid4())
    first = sales_api.post("leads", json={"leadid": lead_id, "lastname": "Lee"})
    second = sales_api.post("leads", json={"leadid": lead_id, "lastname": "Lee"})
    assert first.status_code == 204
    assert first.headers["OData-EntityId"].endswith(f"leads({lead_id})")
    assert second.status_code == 412
    assert error_of(second)["message"] == "A record with matching key values already exists."


def test_create_statecode_rejected(sales_api):
    response = sales_api.post("leads", json={"lastname": "Lee", "statecode": 1})
    assert response.status_code == 400


def test_create_unknown_property(sales_api):
    response = sales_api.post("leads", json={"lastname": "Lee", "Name": "x"})
    assert response.status_code == 400
    assert error_of(response)["code"] == "0x0"
    assert ("Invalid property 'Name' was found in entity 'Microsoft.Dynamics.CRM.lead'"
            in error_of(response)["message"])


def test_create_property_case_sensitive(sales_api):
    response = sales_api.post("leads", json={"LastName": "Lee"})
    assert response.status_code == 400
    assert "Invalid property 'LastName'" in error_of(response)["message"]


def test_create_too_long(sales_api):
    response = sales_api.post("leads", json={"firstname": "x" * 51})
    assert response.status_code == 400
    assert error_of(response)["code"] == "0x80044331"
    assert error_of(response)["message"] == (
        "A validation error occurred.  The length of the 'firstname' attribute of the 'lead' "
        "entity exceeded the maximum allowed length of '50'."
    )


def test_create_max_length_fits(sales_api):
    response = sales_api.post("leads", json={"firstname": "x" * 50})
    assert response.status_code == 204


def test_create_length_counts_utf16(sales_api):
    # An emoji is two UTF-16 code units, so 26 of them exceed 50.
    response = sales_api.post("leads", json={"firstname": "\U0001F600" * 26})
    assert response.status_code == 400


def test_create_wrong_type(sales_api):
    response = sales_api.post("leads", json={"firstname": 5})
    assert response.status_code == 400


def test_create_picklist_out_of_range(sales_api):
    response = sales_api.post("leads", json={"lastname": "Lee", "leadsourcecode": 99})
    assert response.status_code == 400
    assert error_of(response)["code"] == "0x8004431a"


def test_create_requires_json(sales_api):
    response = sales_api.post("leads", data="lastname=Lee",
                              headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 415


def test_unknown_entity_set(sales_api):
    response = sales_api.post("Leads", json={"lastname": "Lee"})
    assert response.status_code == 404
    assert error_of(response)["code"] == "0x8006088a"
    assert error_of(response)["message"] == "Resource not found for the segment 'Leads'."


def test_bind_lookups(sales_api, email):
    account = sales_api.create("accounts", {"name": "Contoso"})
    contact = sales_api.create("contacts", {
        "lastname": "Lee", "parentcustomerid_account@odata.bind": f"/accounts({account['accountid']})",
    })
    lead = sales_api.create("leads", {
        "lastname": "Lee",
        "emailaddress1": email,
        "parentaccountid@odata.bind": f"/accounts({account['accountid']})",
        "customerid_contact@odata.bind": f"/contacts({contact['contactid']})",
        "ownerid@odata.bind": f"/systemusers({seed.ALEX_ID})",
    })
    assert contact["_parentcustomerid_value"] == account["accountid"]
    assert lead["_parentaccountid_value"] == account["accountid"]
    assert lead["_customerid_value"] == contact["contactid"]
    assert lead["_ownerid_value"] == seed.ALEX_ID


def test_bind_plain_customer_lookup(sales_api):
    account = sales_api.create("accounts", {"name": "Contoso"})
    response = sales_api.post("contacts", json={
        "lastname": "Lee", "parentcustomerid@odata.bind": f"/accounts({account['accountid']})",
    })
    assert response.status_code == 400
    assert error_of(response)["code"] == "0x80048d19"
    assert "An undeclared property 'parentcustomerid'" in error_of(response)["message"]


def test_bind_navigation_case_sensitive(sales_api):
    account = sales_api.create("accounts", {"name": "Contoso"})
    response = sales_api.post("leads", json={
        "lastname": "Lee", "ParentAccountId@odata.bind": f"/accounts({account['accountid']})",
    })
    assert response.status_code == 400
    assert error_of(response)["code"] == "0x80048d19"


def test_bind_missing_record(sales_api):
    missing = str(uuid.uuid4())
    response = sales_api.post("leads", json={
        "lastname": "Lee", "parentaccountid@odata.bind": f"/accounts({missing})",
    })
    assert response.status_code == 404
    assert error_of(response)["code"] == "0x80040217"
    assert error_of(response)["message"] == f"Entity 'account' With Id = {missing} Does Not Exist"


def test_bind_wrong_entity_set(sales_api):
    contact = sales_api.create("contacts", {"lastname": "Lee"})
    response = sales_api.post("leads", json={
        "lastname": "Lee", "parentaccountid@odata.bind": f"/contacts({contact['contactid']})",
    })
    assert response.status_code == 400


def test_note_on_lead(sales_api):
    lead = sales_api.create("leads", {"lastname": "Lee"})
    note = sales_api.create("annotations", {
        "subject": "Captured at the booth",
        "notetext": "Wants a demo.",
        "objectid_lead@odata.bind": f"/leads({lead['leadid']})",
    })
    assert note["_objectid_value"] == lead["leadid"]


def test_retrieve_select(sales_api):
    lead = sales_api.create("leads", {"firstname": "Ann", "lastname": "Lee"})
    response = sales_api.get(f"leads({lead['leadid']})?$select=firstname,_ownerid_value")
    record = response.json()
    assert response.status_code == 200
    assert record["leadid"] == lead["leadid"]
    assert record["firstname"] == "Ann"
    assert record["_ownerid_value"] == seed.SAM_ID
    assert "lastname" not in record


def test_retrieve_missing(sales_api):
    missing = str(uuid.uuid4())
    response = sales_api.get(f"leads({missing})")
    assert response.status_code == 404
    assert error_of(response)["message"] == f"Entity 'lead' With Id = {missing} Does Not Exist"


def test_retrieve_unknown_select(sales_api):
    lead = sales_api.create("leads", {"lastname": "Lee"})
    response = sales_api.get(f"leads({lead['leadid']})?$select=Name")
    assert response.status_code == 400
    assert error_of(response)["message"] == (
        "Could not find a property named 'Name' on type 'Microsoft.Dynamics.CRM.lead'."
    )


def test_patch_updates(sales_api):
    lead = sales_api.create("leads", {"firstname": "Ann", "lastname": "Lee"})
    response = sales_api.patch(f"leads({lead['leadid']})", json={"firstname": "Anna"},
                               headers={"If-Match": "*"})
    stored = sales_api.sandbox.store.get("lead", lead["leadid"])
    assert response.status_code == 204
    assert stored["firstname"] == "Anna"
    assert stored["fullname"] == "Anna Lee"
    assert stored["versionnumber"] > lead["versionnumber"]


def test_patch_representation(sales_api):
    lead = sales_api.create("leads", {"lastname": "Lee"})
    response = sales_api.patch(
        f"leads({lead['leadid']})", json={"jobtitle": "CTO"},
        headers={"If-Match": "*", "Prefer": "return=representation"},
    )
    assert response.status_code == 200
    assert response.json()["jobtitle"] == "CTO"


def test_patch_if_match_missing(sales_api):
    response = sales_api.patch(f"leads({uuid.uuid4()})", json={"lastname": "Lee"},
                               headers={"If-Match": "*"})
    assert response.status_code == 404
    assert error_of(response)["code"] == "0x80040217"


def test_patch_upsert_creates(sales_api):
    lead_id = str(uuid.uuid4())
    response = sales_api.patch(f"leads({lead_id})", json={"lastname": "Lee"})
    assert response.status_code == 204
    assert sales_api.sandbox.store.get("lead", lead_id)["lastname"] == "Lee"


def test_patch_upsert_updates(sales_api):
    lead = sales_api.create("leads", {"lastname": "Lee"})
    response = sales_api.patch(f"leads({lead['leadid']})", json={"lastname": "Li"})
    assert response.status_code == 204
    assert sales_api.sandbox.store.get("lead", lead["leadid"])["lastname"] == "Li"


def test_patch_create_only_conflict(sales_api):
    lead = sales_api.create("leads", {"lastname": "Lee"})
    response = sales_api.patch(f"leads({lead['leadid']})", json={"lastname": "Li"},
                               headers={"If-None-Match": "*"})
    assert response.status_code == 412
    assert sales_api.sandbox.store.get("lead", lead["leadid"])["lastname"] == "Lee"


def test_patch_create_only_creates(sales_api):
    lead_id = str(uuid.uuid4())
    response = sales_api.patch(f"leads({lead_id})", json={"lastname": "Lee"},
                               headers={"If-None-Match": "*"})
    assert response.status_code == 204
    assert sales_api.sandbox.store.get("lead", lead_id) is not None


def test_patch_etag_mismatch(sales_api):
    lead = sales_api.create("leads", {"lastname": "Lee"})
    sales_api.patch(f"leads({lead['leadid']})", json={"lastname": "Li"})
    response = sales_api.patch(f"leads({lead['leadid']})", json={"lastname": "Lo"},
                               headers={"If-Match": lead["@odata.etag"]})
    assert response.status_code == 412
    assert error_of(response)["message"] == (
        "The version of the existing record doesn't match the RowVersion property provided."
    )


def test_patch_etag_match(sales_api):
    lead = sales_api.create("leads", {"lastname": "Lee"})
    response = sales_api.patch(f"leads({lead['leadid']})", json={"lastname": "Li"},
                               headers={"If-Match": lead["@odata.etag"]})
    assert response.status_code == 204


def test_patch_statecode_allowed(sales_api):
    lead = sales_api.create("leads", {"lastname": "Lee"})
    response = sales_api.patch(f"leads({lead['leadid']})", json={"statecode": 2},
                               headers={"If-Match": "*"})
    stored = sales_api.sandbox.store.get("lead", lead["leadid"])
    assert response.status_code == 204
    assert stored["statecode"] == 2
    assert stored["statuscode"] == 4


def test_delete_record(sales_api, admin_api):
    lead = sales_api.create("leads", {"lastname": "Lee"})
    response = admin_api.delete(f"leads({lead['leadid']})")
    assert response.status_code == 204
    assert admin_api.get(f"leads({lead['leadid']})").status_code == 404


def test_delete_needs_privilege(sales_api):
    lead = sales_api.create("leads", {"lastname": "Lee"})
    response = sales_api.delete(f"leads({lead['leadid']})")
    assert response.status_code == 403


def test_missing_token(sandbox):
    response = Api(sandbox, None).get("leads")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == (
        f"Bearer authorization_uri={sandbox.authority}/oauth2/authorize, "
        f"resource_id={sandbox.base_url}"
    )


def test_invalid_token(sandbox):
    response = Api(sandbox, "not-a-token").get("WhoAmI")
    assert response.status_code == 401


def test_token_for_other_resource(sandbox):
    user_id = seed.SAM_ID
    token = sandbox.store.add_grant(
        "access", user_id, sandbox.client_id, 3600,
        {"audience": "https://org.crm.dynamics.com", "scope": ""},
    )
    assert Api(sandbox, token).get("WhoAmI").status_code == 401


def test_token_localhost_audience(sandbox):
    port = sandbox.base_url.rsplit(":", 1)[1]
    token = sandbox.store.add_grant(
        "access", seed.SAM_ID, sandbox.client_id, 3600,
        {"audience": f"https://localhost:{port}", "scope": ""},
    )
    assert Api(sandbox, token).get("WhoAmI").status_code == 200


def test_whoami(sales_api):
    response = sales_api.get("WhoAmI")
    assert response.json() == {
        "@odata.context": response.json()["@odata.context"],
        "BusinessUnitId": seed.BUSINESS_UNIT_ID,
        "UserId": seed.SAM_ID,
        "OrganizationId": seed.ORGANIZATION_ID,
    }


def test_reader_cannot_create(reader_api):
    response = reader_api.post("leads", json={"lastname": "Lee"})
    message = error_of(response)["message"]
    assert response.status_code == 403
    assert error_of(response)["code"] == "0x80040220"
    assert message.startswith(f"Principal user (Id={seed.RILEY_ID}, type=8, ")
    assert "is missing prvCreateLead privilege" in message
    assert "on OTC=4 for entity 'lead'" in message


def test_reader_cannot_update(sales_api, reader_api):
    lead = sales_api.create("leads", {"lastname": "Lee"})
    response = reader_api.patch(f"leads({lead['leadid']})", json={"lastname": "Li"},
                                headers={"If-Match": "*"})
    assert response.status_code == 403
    assert "prvWriteLead" in error_of(response)["message"]


def test_reader_can_read(sales_api, reader_api):
    lead = sales_api.create("leads", {"lastname": "Lee"})
    assert reader_api.get(f"leads({lead['leadid']})").status_code == 200


def test_user_roles_expand(sales_api):
    response = sales_api.get(
        f"systemusers({seed.SAM_ID})?$select=fullname"
        "&$expand=systemuserroles_association($select=roleid,name)"
    )
    body = response.json()
    assert response.status_code == 200
    assert body["fullname"] == "Sam Sales"
    assert body["systemuserroles_association"] == [{
        "@odata.etag": body["systemuserroles_association"][0]["@odata.etag"],
        "roleid": seed.SALESPERSON_ROLE_ID,
        "name": "Salesperson",
    }]


def test_systemusers_list(sales_api):
    response = sales_api.get(
        "systemusers?$select=fullname,internalemailaddress,domainname,isdisabled,"
        "azureactivedirectoryobjectid"
    )
    emails = {user["internalemailaddress"] for user in response.json()["value"]}
    assert emails == {user["internalemailaddress"] for user in seed.USERS}


def test_systemusers_read_only(admin_api):
    response = admin_api.post("systemusers", json={"fullname": "New"})
    assert response.status_code == 405


def test_retrieve_user_privileges(sales_api):
    response = sales_api.get(
        f"systemusers({seed.RILEY_ID})/Microsoft.Dynamics.CRM.RetrieveUserPrivileges()"
    )
    names = {entry["PrivilegeName"] for entry in response.json()["RolePrivileges"]}
    assert "prvReadLead" in names
    assert "prvCreateLead" not in names


def test_attribute_metadata(sales_api):
    response = sales_api.get(
        "EntityDefinitions(LogicalName='lead')/Attributes/"
        "Microsoft.Dynamics.CRM.StringAttributeMetadata?$select=LogicalName,MaxLength"
    )
    lengths = {item["LogicalName"]: item["MaxLength"] for item in response.json()["value"]}
    assert lengths["firstname"] == 50
    assert lengths["subject"] == 300


@pytest.mark.parametrize("body", [{"lastname": "Lee", "@odata.type": "Microsoft.Dynamics.CRM.contact"}])
def test_create_wrong_odata_type(sales_api, body):
    assert sales_api.post("leads", json=body).status_code == 400


def test_duplicate_detection_on(sales_api, email):
    sales_api.post("leads", json={"lastname": "Lee", "emailaddress1": email})
    response = sales_api.post("leads", json={"lastname": "Lee", "emailaddress1": email.upper()},
                              headers={"MSCRM.SuppressDuplicateDetection": "false"})
    assert response.status_code == 500
    assert error_of(response)["code"] == "0x80040333"


def test_duplicate_detection_off_by_default(sales_api, email):
    sales_api.post("leads", json={"lastname": "Lee", "emailaddress1": email})
    response = sales_api.post("leads", json={"lastname": "Lee", "emailaddress1": email})
    assert response.status_code == 204


def test_request_log_counts(sales_api, sandbox):
    before = len(sandbox.store.requests(method="GET", path_prefix="/api/data/v9.2/WhoAmI"))
    sales_api.get("WhoAmI")
    after = sandbox.store.requests(method="GET", path_prefix="/api/data/v9.2/WhoAmI")
    assert len(after) == before + 1
    assert after[-1]["systemuserid"] == seed.SAM_ID
    assert after[-1]["status"] == 200


def test_throttled_after_limit(tmp_path):
    running = start_sandbox(tmp_path, rate_limit_requests=2)
    try:
        token = running.store.add_grant(
            "access", seed.SAM_ID, running.client_id, 3600,
            {"audience": running.base_url, "scope": ""},
        )
        api = Api(running, token)
        statuses = [api.get("WhoAmI").status_code for _ in range(2)]
        throttled = api.get("WhoAmI")
    finally:
        running.stop()
    assert statuses == [200, 200]
    assert throttled.status_code == 429
    assert int(throttled.headers["Retry-After"]) > 0
    assert error_of(throttled)["code"] == "0x80072322"


def test_rate_limit_header(sales_api):
    response = sales_api.get("WhoAmI")
    assert int(response.headers["x-ms-ratelimit-burst-remaining-xrm-requests"]) >= 0
