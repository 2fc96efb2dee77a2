import pytest

from integrations.sync.normalize import (
    email_domain,
    is_free_mail_domain,
    normalize_email,
    normalize_website,
    parse_phone,
    phone_search_fragments,
    website_host,
)


@pytest.mark.parametrize("raw, region, expected", [
    ("+1 (201) 555-0143", "US", "+12015550143"),
    ("2015550143", "US", "+12015550143"),
    ("201.555.0143", "US", "+12015550143"),
    ("1-306-555-0148", "CA", "+13065550148"),
    ("020 7946 0123", "GB", "+442079460123"),
    ("+44 (0)20 7946 0123", "US", "+442079460123"),
    ("01 42 68 53 00", "FR", "+33142685300"),
    ("+49 40 123456-78", "US", "+494012345678"),
    ("call me", "US", ""),
    ("", "US", ""),
    ("12", "US", ""),
])
def test_parse_phone(raw, region, expected):
    assert parse_phone(raw, region) == expected


def test_parse_phone_region_decides_national_numbers():
    assert parse_phone("020 7946 0123", "GB") != parse_phone("020 7946 0123", "US")


def test_phone_fragments_cover_pair_grouping():
    assert phone_search_fragments("+33142685300") == ["5300", "53 00", "53-00", "53.00"]


def test_phone_fragments_short_number():
    assert phone_search_fragments("+1234") == []


@pytest.mark.parametrize("raw, expected", [
    ("  Ada@Example.ORG ", "ada@example.org"),
    ("no-at-sign", ""),
    ("", ""),
])
def test_normalize_email(raw, expected):
    assert normalize_email(raw) == expected


def test_email_domain():
    assert email_domain("Pat@Fabrikam.Example") == "fabrikam.example"


@pytest.mark.parametrize("domain, expected", [
    ("gmail.com", True), ("outlook.com", True), ("GMX.de", True),
    ("fabrikam.example", False),
])
def test_free_mail_domains(domain, expected):
    assert is_free_mail_domain(domain) is expected


@pytest.mark.parametrize("raw, expected", [
    ("HTTPS://www.Example.com/", "example.com"),
    ("example.com", "example.com"),
    ("http://example.com/about/", "example.com/about"),
    ("www.example.com:8080/x", "example.com/x"),
    ("", ""),
])
def test_normalize_website(raw, expected):
    assert normalize_website(raw) == expected


def test_website_host_drops_path():
    assert website_host("https://www.example.com/about") == "example.com"
