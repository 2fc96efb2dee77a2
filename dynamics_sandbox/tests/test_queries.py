"""Web API query conformance: $filter, $select, $orderby, $top, paging and option errors."""

import uuid
from urllib.parse import quote

import pytest


def error_of(response):
    return response.json()["error"]


def filter_leads(api, expression, extra="", **kwargs):
    """Return the response of GET leads with `expression` percent-encoded as $filter."""
    return api.get(f"leads?$filter={quote(expression, safe='')}{extra}", **kwargs)


def ids(response):
    return {record["leadid"] for record in response.json()["value"]}


@pytest.fixture
def tag():
    """A unique company name that scopes a test's leads."""
    return f"Co-{uuid.uuid4().hex[:10]}"


def test_filter_eq(sales_api, email, tag):
    lead = sales_api.create("leads", {"lastname": "Lee", "emailaddress1": email})
    response = filter_leads(sales_api, f"emailaddress1 eq '{email}'")
    assert response.status_code == 200
    assert ids(response) == {lead["leadid"]}


def test_filter_context(sales_api, email):
    response = filter_leads(sales_api, f"emailaddress1 eq '{email}'", "&$select=lastname")
    assert response.json()["@odata.context"].endswith("/api/data/v9.2/$metadata#leads(lastname)")


def test_filter_ignores_case(sales_api, email):
    lead = sales_api.create("leads", {"lastname": "Lee", "emailaddress1": email})
    response = filter_leads(sales_api, f"emailaddress1 eq '{email.upper()}'")
    assert ids(response) == {lead["leadid"]}


def test_filter_doubled_quote(sales_api, tag):
    lead = sales_api.create("leads", {"lastname": "O'Neil", "companyname": tag})
    response = filter_leads(sales_api, f"lastname eq 'O''Neil' and companyname eq '{tag}'")
    assert ids(response) == {lead["leadid"]}


def test_filter_plus_encoded(sales_api):
    email = f"ann+{uuid.uuid4().hex[:8]}@example.org"
    lead = sales_api.create("leads", {"lastname": "Lee", "emailaddress1": email})
    response = filter_leads(sales_api, f"emailaddress1 eq '{email}'")
    assert ids(response) == {lead["leadid"]}


def test_filter_plus_unencoded_is_space(sales_api):
    email = f"ann+{uuid.uuid4().hex[:8]}@example.org"
    sales_api.create("leads", {"lastname": "Lee", "emailaddress1": email})
    response = sales_api.get(f"leads?$filter=emailaddress1 eq '{email}'")
    assert ids(response) == set()


def test_filter_crafted_value_matches_nothing(sales_api, email):
    sales_api.create("leads", {"lastname": "Lee", "emailaddress1": email})
    crafted = "x' or emailaddress1 ne 'x"
    escaped = crafted.replace("'", "''")
    response = filter_leads(sales_api, f"emailaddress1 eq '{escaped}'")
    assert response.status_code == 200
    assert ids(response) == set()


def test_filter_unterminated_literal(sales_api):
    expression = "lastname eq 'O'Neil'"
    response = filter_leads(sales_api, expression)
    assert response.status_code == 400
    assert error_of(response)["message"] == (
        f"There is an unterminated literal at position {len(expression)} in '{expression}'."
    )


def test_filter_contains_percent_wildcard(sales_api, tag):
    lead = sales_api.create("leads", {"lastname": "Lee", "companyname": f"{tag} Ltd"})
    response = filter_leads(sales_api, f"contains(companyname, '{tag}%Ltd')")
    assert ids(response) == {lead["leadid"]}


def test_filter_underscore_wildcard(sales_api, tag):
    lead = sales_api.create("leads", {"lastname": "Lee", "companyname": f"{tag}-A"})
    response = filter_leads(sales_api, f"startswith(companyname, '{tag}_A')")
    assert ids(response) == {lead["leadid"]}


def test_filter_startswith_endswith(sales_api, tag):
    lead = sales_api.create("leads", {"lastname": "Lee", "companyname": f"{tag} Holdings"})
    both = filter_leads(sales_api, f"startswith(companyname, '{tag}') and endswith(companyname, 'HOLDINGS')")
    assert ids(both) == {lead["leadid"]}


def test_filter_or_not_parentheses(sales_api, tag):
    first = sales_api.create("leads", {"lastname": "A", "companyname": tag, "leadsourcecode": 8})
    second = sales_api.create("leads", {"lastname": "B", "companyname": tag, "leadsourcecode": 7})
    sales_api.create("leads", {"lastname": "C", "companyname": tag})
    response = filter_leads(
        sales_api,
        f"companyname eq '{tag}' and (leadsourcecode eq 8 or leadsourcecode eq 7) "
        "and not (lastname eq 'Z')",
    )
    assert ids(response) == {first["leadid"], second["leadid"]}


def test_filter_null(sales_api, tag):
    lead = sales_api.create("leads", {"lastname": "Lee", "companyname": tag})
    response = filter_leads(sales_api, f"companyname eq '{tag}' and jobtitle eq null")
    assert ids(response) == {lead["leadid"]}


def test_filter_lookup_value(sales_api, tag):
    account = sales_api.create("accounts", {"name": tag})
    lead = sales_api.create("leads", {
        "lastname": "Lee", "parentaccountid@odata.bind": f"/accounts({account['accountid']})",
    })
    response = filter_leads(sales_api, f"_parentaccountid_value eq {account['accountid']}")
    assert ids(response) == {lead["leadid"]}


def test_filter_comparisons(sales_api, tag):
    lead = sales_api.create("leads", {"lastname": "Lee", "companyname": tag, "leadsourcecode": 5})
    for expression in ("gt 4", "ge 5", "lt 6", "le 5", "ne 4"):
        response = filter_leads(sales_api, f"companyname eq '{tag}' and leadsourcecode {expression}")
        assert ids(response) == {lead["leadid"]}, expression


def test_filter_unknown_column(sales_api):
    response = filter_leads(sales_api, "Name eq 'x'")
    assert response.status_code == 400
    assert error_of(response)["message"] == (
        "Could not find a property named 'Name' on type 'Microsoft.Dynamics.CRM.lead'."
    )


def test_filter_type_mismatch(sales_api):
    response = filter_leads(sales_api, "leadsourcecode eq 'Web'")
    assert response.status_code == 400


def test_filter_no_tolower(sales_api):
    response = filter_leads(sales_api, "tolower(lastname) eq 'lee'")
    assert response.status_code == 400


def test_select_unknown(sales_api):
    response = sales_api.get("leads?$select=lastname,Name")
    assert response.status_code == 400
    assert "Could not find a property named 'Name'" in error_of(response)["message"]


@pytest.mark.parametrize("option", ["$skip=1", "$search=x", "$Filter=lastname eq 'x'", "$bogus=1"])
def test_rejected_options(sales_api, option):
    response = sales_api.get(f"leads?{option}")
    assert response.status_code == 400


def test_custom_option_ignored(sales_api):
    assert sales_api.get("leads?$top=1&trace=1").status_code == 200


def test_orderby_and_top(sales_api, tag):
    for name in ("b", "C", "a"):
        sales_api.create("leads", {"lastname": name, "companyname": tag})
    response = filter_leads(sales_api, f"companyname eq '{tag}'", "&$orderby=lastname desc&$top=2")
    names = [record["lastname"] for record in response.json()["value"]]
    assert names == ["C", "b"]


def test_top_invalid(sales_api):
    assert sales_api.get("leads?$top=0").status_code == 400


def test_paging_next_link(sales_api, tag):
    for index in range(3):
        sales_api.create("leads", {"lastname": f"L{index}", "companyname": tag})
    first = filter_leads(sales_api, f"companyname eq '{tag}'", "&$orderby=lastname",
                         headers={"Prefer": "odata.maxpagesize=2"})
    second = sales_api.session.get(first.json()["@odata.nextLink"],
                                   headers={"Prefer": "odata.maxpagesize=2"})
    assert first.headers["Preference-Applied"] == "odata.maxpagesize=2"
    assert [r["lastname"] for r in first.json()["value"]] == ["L0", "L1"]
    assert [r["lastname"] for r in second.json()["value"]] == ["L2"]
    assert "@odata.nextLink" not in second.json()


def test_count(sales_api, tag):
    sales_api.create("leads", {"lastname": "Lee", "companyname": tag})
    response = filter_leads(sales_api, f"companyname eq '{tag}'", "&$count=true")
    assert response.json()["@odata.count"] == 1


def test_reader_can_query(reader_api):
    assert reader_api.get("leads?$top=1").status_code == 200


def test_filter_too_deep_is_400(sales_api):
    response = filter_leads(sales_api, "(" * 500 + "lastname eq 'a'" + ")" * 500)
    assert response.status_code == 400
    assert error_of(response)["code"] == "0x0"
    assert "nested more than 100 levels" in error_of(response)["message"]
