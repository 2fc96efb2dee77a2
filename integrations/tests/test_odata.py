from urllib.parse import unquote

from integrations.client.odata import any_equal, literal, query_string


def test_literal_doubles_single_quotes():
    assert literal("o'neil@example.com") == "'o''neil@example.com'"


def test_literal_keeps_injection_inside_string():
    crafted = "x' or emailaddress1 ne 'y"
    assert literal(crafted) == "'x'' or emailaddress1 ne ''y'"


def test_any_equal_skips_empty_values():
    condition = any_equal([("emailaddress1", "a@x.com"), ("telephone1", "")])
    assert condition == "emailaddress1 eq 'a@x.com'"


def test_any_equal_joins_with_or():
    condition = any_equal([("emailaddress1", "a@x.com"), ("telephone1", "+1 555")])
    assert condition == "emailaddress1 eq 'a@x.com' or telephone1 eq '+1 555'"


def test_any_equal_empty_when_no_values():
    assert any_equal([("emailaddress1", ""), ("telephone1", "")]) == ""


def test_query_string_encodes_reserved_characters():
    encoded = query_string({"$filter": "emailaddress1 eq 'dana+expo@x.com' & #1 é"})
    assert "+" not in encoded
    assert "&" not in encoded.split("=", 1)[1]
    assert "#" not in encoded
    assert "%2B" in encoded
    assert unquote(encoded.split("=", 1)[1]) == "emailaddress1 eq 'dana+expo@x.com' & #1 é"


def test_query_string_skips_empty_options():
    assert query_string({"$select": "leadid", "$top": None, "$filter": ""}) == "$select=leadid"
