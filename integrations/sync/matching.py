"""Finding the Dynamics records that match a lead, and choosing one deterministically.

Dataverse compares strings case-insensitively, so emails are found with `eq`. Phones are
free text in Dynamics, so candidates are found by their last four digits and then
compared in E.164 form here. A phone match counts only when the lead or the record has no
email. When several records match, open or active records come before qualified or
inactive ones, then the most recently modified one wins.
"""

from dataclasses import dataclass, field

from ..client.odata import literal
from .normalize import normalize_email, parse_phone, phone_search_fragments

EMAIL_COLUMNS = ("emailaddress1", "emailaddress2", "emailaddress3")
PHONE_COLUMNS = {
    "lead": ("telephone1", "telephone2", "telephone3", "mobilephone"),
    "contact": ("telephone1", "telephone2", "telephone3", "mobilephone"),
}
PRIMARY_KEYS = {"lead": "leadid", "contact": "contactid", "account": "accountid"}
ENTITY_SETS = {"lead": "leads", "contact": "contacts", "account": "accounts",
               "annotation": "annotations"}
# Lookup columns read with each record, as the Web API names them.
LOOKUP_VALUES = {
    "lead": ("_ownerid_value", "_parentaccountid_value", "_parentcontactid_value"),
    "contact": ("_ownerid_value", "_parentcustomerid_value"),
    "account": ("_ownerid_value",),
}
# Rank of each statecode: open or active first. For leads, disqualified (2) comes before
# qualified (1), because a qualified lead is left alone.
STATE_RANKS = {"lead": {0: 0, 2: 1, 1: 2}, "contact": {0: 0, 1: 1}, "account": {0: 0, 1: 1}}


@dataclass
class Match:
    """A Dynamics record that matches the lead, and on what."""

    row: dict
    matched_by: str  # "email" or "phone"

    @property
    def record_id(self):
        return self.row["id"]


@dataclass
class MatchResult:
    """The matching records, best first."""

    matches: list = field(default_factory=list)

    @property
    def chosen(self):
        return self.matches[0] if self.matches else None

    @property
    def others(self):
        return [match.record_id for match in self.matches[1:]]

    def find(self, record_id):
        """Return the Match with `record_id`, or None."""
        return next((match for match in self.matches if match.record_id == record_id), None)


def record_filter(entity, email, e164):
    """Return the $filter that finds candidates by email or phone, or "" if neither."""
    terms = []
    if email:
        terms += [f"{column} eq {literal(email)}" for column in EMAIL_COLUMNS]
    for fragment in phone_search_fragments(e164) if e164 else []:
        terms += [f"contains({column},{literal(fragment)})"
                  for column in PHONE_COLUMNS[entity]]
    return " or ".join(terms)


def record_select(entity, mapped_columns):
    """Return the columns to read with each candidate: what matching, ranking and the
    field mappings need."""
    columns = {PRIMARY_KEYS[entity], "statecode", "modifiedon", "createdon", *EMAIL_COLUMNS,
               *PHONE_COLUMNS[entity], *LOOKUP_VALUES[entity], *mapped_columns}
    return sorted(columns)


def classify(entity, row, email, e164, region):
    """Return "email" or "phone" when the row really matches the lead, else None.

    A shared number (a switchboard, a front desk) must not merge two people, so a phone
    match does not count when the lead and the record both have emails and they differ.
    """
    row_emails = {normalize_email(row.get(column)) for column in EMAIL_COLUMNS} - {""}
    if email and email in row_emails:
        return "email"
    if email and row_emails:
        return None
    if e164 and any(parse_phone(row.get(column), region) == e164
                    for column in PHONE_COLUMNS[entity]):
        return "phone"
    return None


def rank_rows(entity, rows):
    """Sort rows best first: by state rank, then most recently modified.

    Ties (Dataverse stores times to the second) go to the most recently created record,
    then to the highest id, so the choice never depends on the order of the response.
    """
    ranks = STATE_RANKS.get(entity, {})
    key = PRIMARY_KEYS[entity]
    newest_first = sorted(
        rows,
        key=lambda row: (row.get("modifiedon") or "", row.get("createdon") or "",
                         row.get(key) or ""),
        reverse=True,
    )
    return sorted(newest_first, key=lambda row: ranks.get(row.get("statecode", 0), 9))


def choose_match(entity, rows, email, e164, region):
    """Return a MatchResult from the rows a candidate query returned."""
    key = PRIMARY_KEYS[entity]
    matches = []
    for row in rank_rows(entity, rows):
        matched_by = classify(entity, row, email, e164, region)
        if matched_by:
            row = dict(row, id=row[key])
            matches.append(Match(row, matched_by))
    return MatchResult(matches)
