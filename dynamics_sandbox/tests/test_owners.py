"""Owner teams, owner binds and the lookuplogicalname annotation."""

from dynamics_sandbox import seed

LOOKUP_TYPE = "@Microsoft.Dynamics.CRM.lookuplogicalname"
ALL_ANNOTATIONS = {"Prefer": 'odata.include-annotations="*"'}


def error_of(response):
    return response.json()["error"]


def test_team_seeded(sales_api):
    response = sales_api.get(f"teams({seed.EVENT_SALES_TEAM_ID})?$select=name,teamtype")
    team = response.json()
    assert response.status_code == 200
    assert team["name"] == "Event Sales Team"
    assert team["teamtype"] == 0


def test_team_business_unit(sales_api):
    team = sales_api.get(f"teams({seed.EVENT_SALES_TEAM_ID})").json()
    assert team["_businessunitid_value"] == seed.BUSINESS_UNIT_ID


def test_teams_read_only(admin_api):
    response = admin_api.post("teams", json={"name": "Another team"})
    assert response.status_code == 405


def test_owner_team_bind(sales_api, email):
    record = sales_api.create("leads", {
        "lastname": "Lee", "emailaddress1": email,
        "ownerid@odata.bind": f"/teams({seed.EVENT_SALES_TEAM_ID})",
    })
    assert record["_ownerid_value"] == seed.EVENT_SALES_TEAM_ID
    assert record["_owningteam_value"] == seed.EVENT_SALES_TEAM_ID
    assert record["_owninguser_value"] is None


def test_owner_user_bind(sales_api, email):
    record = sales_api.create("leads", {
        "lastname": "Lee", "emailaddress1": email,
        "ownerid@odata.bind": f"/systemusers({seed.ALEX_ID})",
    })
    assert record["_ownerid_value"] == seed.ALEX_ID
    assert record["_owninguser_value"] == seed.ALEX_ID
    assert record["_owningteam_value"] is None


def test_owner_default_is_caller(sales_api, email):
    record = sales_api.create("leads", {"lastname": "Lee", "emailaddress1": email})
    assert record["_ownerid_value"] == seed.SAM_ID
    assert record["_owninguser_value"] == seed.SAM_ID
    assert record["_owningteam_value"] is None


def test_owner_owners_set_rejected(sales_api):
    response = sales_api.post("leads", json={
        "lastname": "Lee", "ownerid@odata.bind": f"/owners({seed.EVENT_SALES_TEAM_ID})",
    })
    assert response.status_code == 400
    assert "'owners'" in error_of(response)["message"]


def test_owner_unknown_team(sales_api):
    response = sales_api.post("leads", json={
        "lastname": "Lee", "ownerid@odata.bind": "/teams(00000000-0000-4000-8000-0000000000ff)",
    })
    assert response.status_code == 404
    assert error_of(response)["code"] == "0x80040217"


def test_owningteam_not_bindable(sales_api):
    response = sales_api.post("leads", json={
        "lastname": "Lee", "owningteam@odata.bind": f"/teams({seed.EVENT_SALES_TEAM_ID})",
    })
    assert response.status_code == 400
    assert error_of(response)["code"] == "0x80048d19"


def test_owner_reassign_to_team(sales_api, email):
    record = sales_api.create("leads", {"lastname": "Lee", "emailaddress1": email})
    response = sales_api.patch(
        f"leads({record['leadid']})",
        json={"ownerid@odata.bind": f"/teams({seed.EVENT_SALES_TEAM_ID})"},
        headers={"Prefer": 'return=representation,odata.include-annotations="*"'},
    )
    updated = response.json()
    assert response.status_code == 200
    assert updated["_owningteam_value"] == seed.EVENT_SALES_TEAM_ID
    assert updated["_owninguser_value"] is None
    assert updated["_ownerid_value" + LOOKUP_TYPE] == "team"


def test_owner_reassign_needs_assign(reader_api, sales_api, email):
    record = sales_api.create("leads", {"lastname": "Lee", "emailaddress1": email})
    response = reader_api.patch(
        f"leads({record['leadid']})",
        json={"ownerid@odata.bind": f"/teams({seed.EVENT_SALES_TEAM_ID})"},
    )
    assert response.status_code == 403


def test_lookup_type_all_annotations(sales_api, email):
    record = sales_api.create("leads", {
        "lastname": "Lee", "emailaddress1": email,
        "ownerid@odata.bind": f"/teams({seed.EVENT_SALES_TEAM_ID})",
    })
    response = sales_api.get(f"leads({record['leadid']})?$select=lastname,_ownerid_value",
                             headers=ALL_ANNOTATIONS)
    body = response.json()
    assert body["_ownerid_value" + LOOKUP_TYPE] == "team"
    assert response.headers["Preference-Applied"] == 'odata.include-annotations="*"'


def test_lookup_type_named_annotation(sales_api, email):
    sales_api.create("leads", {"lastname": "Lee", "emailaddress1": email})
    response = sales_api.get(
        f"leads?$select=_ownerid_value,_owninguser_value&$filter=emailaddress1 eq '{email}'",
        headers={"Prefer": 'odata.include-annotations="Microsoft.Dynamics.CRM.lookuplogicalname"'},
    )
    row = response.json()["value"][0]
    assert row["_ownerid_value" + LOOKUP_TYPE] == "systemuser"
    assert row["_owninguser_value" + LOOKUP_TYPE] == "systemuser"


def test_lookup_type_absent_by_default(sales_api, email):
    record = sales_api.create("leads", {"lastname": "Lee", "emailaddress1": email})
    body = sales_api.get(f"leads({record['leadid']})").json()
    assert "_ownerid_value" + LOOKUP_TYPE not in body


def test_lookup_type_other_annotation_only(sales_api, email):
    record = sales_api.create("leads", {"lastname": "Lee", "emailaddress1": email})
    body = sales_api.get(
        f"leads({record['leadid']})",
        headers={"Prefer": 'odata.include-annotations="OData.Community.Display.V1.FormattedValue"'},
    ).json()
    assert "_ownerid_value" + LOOKUP_TYPE not in body


def test_lookup_type_null_owner_value(sales_api, email):
    record = sales_api.create("leads", {"lastname": "Lee", "emailaddress1": email})
    body = sales_api.get(f"leads({record['leadid']})", headers=ALL_ANNOTATIONS).json()
    assert "_owningteam_value" + LOOKUP_TYPE not in body


def test_owner_metadata_targets(sales_api):
    response = sales_api.get(
        "EntityDefinitions(LogicalName='lead')/Attributes?$select=LogicalName,Targets"
    )
    owner = next(item for item in response.json()["value"] if item["LogicalName"] == "ownerid")
    assert owner["Targets"] == ["systemuser", "team"]
