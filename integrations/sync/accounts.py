"""Finding the account a lead belongs to: by website (when turned on), company name or
email domain. Free-mail domains (gmail.com, outlook.com, ...) never link an account."""

from dataclasses import dataclass

from ..client.odata import literal
from .matching import rank_rows
from .normalize import email_domain, is_free_mail_domain, website_host

# Account columns read with each candidate.
ACCOUNT_SELECT = ("accountid", "name", "websiteurl", "emailaddress1", "statecode",
                  "modifiedon", "createdon", "_ownerid_value")
# Preference when one account matches in several ways: website first, then company, then
# the email domain.
CRITERIA = ("website", "company", "email domain")


@dataclass(frozen=True)
class AccountKeys:
    """The keys a lead offers to find its account; empty strings where it has none."""

    website_host: str
    company: str
    domain: str

    @classmethod
    def for_lead(cls, lead, search_by_website):
        domain = email_domain(lead.email)
        if is_free_mail_domain(domain):
            domain = ""
        return cls(
            website_host=website_host(lead.website) if search_by_website else "",
            company=lead.company.strip(),
            domain=domain,
        )

    def __bool__(self):
        return bool(self.website_host or self.company or self.domain)

    def new_account_name(self):
        """Return the name for a new account: the company, else the email domain."""
        return self.company or self.domain


def account_filter(keys):
    """Return the $filter that finds candidate accounts, or "" when there is no key."""
    terms = []
    if keys.website_host:
        terms.append(f"contains(websiteurl,{literal(keys.website_host)})")
    if keys.company:
        terms.append(f"name eq {literal(keys.company)}")
    if keys.domain:
        terms.append(f"contains(websiteurl,{literal(keys.domain)})")
        terms.append(f"endswith(emailaddress1,{literal('@' + keys.domain)})")
        if not keys.company:
            # The account an earlier lead without a company created is named after the
            # domain.
            terms.append(f"name eq {literal(keys.domain)}")
    return " or ".join(terms)


def match_criterion(keys, row):
    """Return the best criterion on which `row` matches, or None (a false candidate)."""
    host = website_host(row.get("websiteurl"))
    if keys.website_host and host == keys.website_host:
        return "website"
    if keys.company and (row.get("name") or "").strip().lower() == keys.company.lower():
        return "company"
    name = (row.get("name") or "").strip().lower()
    if keys.domain and (host == keys.domain
                        or email_domain(row.get("emailaddress1")) == keys.domain
                        or (not keys.company and name == keys.domain)):
        return "email domain"
    return None


def choose_account(keys, rows):
    """Return (row, criterion, other matching ids) for the best account, or
    (None, None, [])."""
    matches = []
    for row in rank_rows("account", rows):
        criterion = match_criterion(keys, row)
        if criterion:
            matches.append((CRITERIA.index(criterion), row, criterion))
    if not matches:
        return None, None, []
    matches.sort(key=lambda match: match[0])
    _, row, criterion = matches[0]
    return row, criterion, [other["accountid"] for _, other, _ in matches[1:]]
