"""Unit tests of the $filter tokenizer and parser, without a server."""

import pytest

from dynamics_sandbox import schema
from dynamics_sandbox.odata_filter import (
    MAX_NESTING_DEPTH,
    FilterError,
    like_pattern,
    parse_filter,
    tokenize,
)

LEAD = {
    "lastname": "O'Neil",
    "firstname": None,
    "emailaddress1": "Ann+1@Example.org",
    "leadsourcecode": 8,
    "createdon": "2024-05-01T10:00:00Z",
    "_ownerid_value": "00000000-0000-4000-8000-00000000a002",
}


def matches(expression, record=LEAD):
    return parse_filter(expression, schema.LEAD)(record)


@pytest.mark.parametrize("expression", [
    "lastname eq 'o''neil'",
    "emailaddress1 eq 'ann+1@example.org'",
    "leadsourcecode eq 8 and not (leadsourcecode eq 7)",
    "leadsourcecode gt 7 and leadsourcecode le 8",
    "firstname eq null",
    "lastname ne null",
    "contains(emailaddress1, '+1@')",
    "startswith(lastname, 'o''n')",
    "endswith(emailaddress1, '.ORG')",
    "contains(emailaddress1, 'ann%example')",
    "startswith(lastname, 'O_Neil')",
    "_ownerid_value eq 00000000-0000-4000-8000-00000000A002",
    "createdon gt 2024-01-01T00:00:00Z",
    "lastname eq 'x' or (leadsourcecode eq 8)",
])
def test_filter_matches(expression):
    assert matches(expression)


@pytest.mark.parametrize("expression", [
    "lastname eq 'O'",
    "lastname eq 'O''Neil'' or ''1''=''1'",
    "emailaddress1 eq 'ann 1@example.org'",
    "contains(lastname, 'x')",
    "firstname ne null",
    "leadsourcecode lt 8",
    "not (leadsourcecode eq 8)",
    "createdon lt 2024-01-01T00:00:00Z",
])
def test_filter_rejects_record(expression):
    assert not matches(expression)


def test_filter_eq_not_wildcard():
    assert not matches("lastname eq 'O%'")


def test_unterminated_position():
    with pytest.raises(FilterError, match=r"unterminated literal at position 13 in 'lastname eq '"):
        tokenize("lastname eq '")


@pytest.mark.parametrize("expression", [
    "lastname eq",
    "(lastname eq 'a'",
    "lastname eq 'a' extra",
    "lastname eq 'a' and",
    "contains(lastname)",
    "contains(leadsourcecode, '8')",
    "lastname eq 5",
    "_ownerid_value eq '00000000-0000-4000-8000-00000000a002'",
    "Lastname eq 'a'",
    "parentaccountid eq null",
    "lastname eq 'a'; drop",
])
def test_filter_invalid(expression):
    with pytest.raises(FilterError):
        parse_filter(expression, schema.LEAD)


def test_like_pattern_escapes_regex():
    assert like_pattern("a.b", "contains").fullmatch("xa.bx")
    assert not like_pattern("a.b", "contains").fullmatch("xaxbx")


def test_filter_nesting_at_limit():
    depth = MAX_NESTING_DEPTH
    assert matches("(" * depth + "leadsourcecode eq 8" + ")" * depth)
    assert matches("not " * depth + "leadsourcecode eq 8") == (depth % 2 == 0)


@pytest.mark.parametrize("expression", [
    "(" * 500 + "lastname eq 'a'" + ")" * 500,
    "(" * (MAX_NESTING_DEPTH + 1) + "lastname eq 'a'" + ")" * (MAX_NESTING_DEPTH + 1),
    "not " * 2000 + "lastname eq 'a'",
    "(not " * 60 + "lastname eq 'a'" + ")" * 60,
])
def test_filter_too_deep(expression):
    with pytest.raises(FilterError, match=f"nested more than {MAX_NESTING_DEPTH} levels"):
        parse_filter(expression, schema.LEAD)


def test_filter_long_or_chain():
    expression = " or ".join(["lastname eq 'x'"] * 5000) + " or leadsourcecode eq 8"
    assert matches(expression)
    assert not matches(" and ".join(["leadsourcecode eq 8"] * 5000) + " and lastname eq 'x'")


@pytest.mark.parametrize("expression, message", [
    ("leadsourcecode eq " + "1" * 5000, "more than 30 digits"),
    ("createdon gt 2024-13-45T00:00:00Z", "not a valid date and time"),
    ("createdon gt \u0662\u0660\u0662\u0664-01-01T00:00:00Z", "Syntax error"),
    ("leadsourcecode eq \u0668", "Syntax error"),
])
def test_filter_invalid_literal(expression, message):
    with pytest.raises(FilterError, match=message):
        parse_filter(expression, schema.LEAD)
