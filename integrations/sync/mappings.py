"""Field mappings: which lead field (or fixed value) fills which Dynamics column, and how.

Each mapping has a mode:
- overwrite: write the lead's value whenever it is not empty;
- complete: write only when the Dynamics value is empty ("Complete if missing");
- append: add the lead's value to the Dynamics value after a separator, unless the
  Dynamics value already contains it.
An empty lead value never blanks a Dynamics value, whatever the mode.
"""

from dataclasses import dataclass

OVERWRITE = "overwrite"
COMPLETE = "complete"
APPEND = "append"
MODES = {
    OVERWRITE: "Overwrite",
    COMPLETE: "Complete if missing",
    APPEND: "Append",
}

# The owner mapping: the capturing member's Dynamics user when one has the member's email,
# else the integration user. A fixed value "team:<guid>" or "user:<guid>" names an owner.
OWNER_COLUMN = "ownerid"
OWNER_SOURCE = "captured_by"

# A Lead or Contact created without a last name gets this one, so that Dynamics views,
# which sort and search by last name, still show the record.
LAST_NAME_FALLBACK = "Unknown"

# Separators for Append: memo (multi-line) columns get a new line, text columns "; ".
MEMO_SEPARATOR = "\n"
TEXT_SEPARATOR = "; "


def _full_name(lead):
    return f"{lead.first_name} {lead.last_name}".strip()


def _member_name(lead):
    member = lead.captured_by
    return member.get_full_name() or member.username


def _capture_topic(lead):
    return f"Captured by {_member_name(lead)} on {lead.captured_at:%Y-%m-%d}"


# Lead fields a mapping can read: name -> (label, function of the lead).
SOURCE_FIELDS = {
    "first_name": ("First name", lambda lead: lead.first_name),
    "last_name": ("Last name", lambda lead: lead.last_name),
    "full_name": ("Full name", _full_name),
    "email": ("Email", lambda lead: lead.email),
    "phone": ("Phone", lambda lead: lead.phone),
    "company": ("Company", lambda lead: lead.company),
    "job_title": ("Job title", lambda lead: lead.job_title),
    "website": ("Website", lambda lead: lead.website),
    "notes": ("Notes", lambda lead: lead.notes),
    "mobile_phone": ("Mobile phone", lambda lead: lead.mobile_phone),
    "street": ("Street", lambda lead: lead.street),
    "city": ("City", lambda lead: lead.city),
    "postal_code": ("Postal code", lambda lead: lead.postal_code),
    "region": ("State or province", lambda lead: lead.region),
    "country": ("Country", lambda lead: lead.country),
    "captured_by_name": ("Captured by (name)", _member_name),
    "captured_by_email": ("Captured by (email)", lambda lead: lead.captured_by.email),
    "captured_on": ("Capture date", lambda lead: f"{lead.captured_at:%Y-%m-%d}"),
    "capture_topic": ("Topic: captured by whom and when", _capture_topic),
    "team_name": ("Team name", lambda lead: lead.team.name),
    OWNER_SOURCE: ("Capturing member as owner", lambda lead: ""),
}


@dataclass(frozen=True)
class MappingRule:
    """One mapping: a lead field or a fixed value, the target column and the mode."""

    entity: str
    column: str
    source: str = ""
    fixed_value: str = ""
    mode: str = OVERWRITE

    def value_for(self, lead):
        """Return the value this mapping writes for `lead`, trimmed; "" when empty."""
        if not self.source:
            return self.fixed_value.strip()
        return str(SOURCE_FIELDS[self.source][1](lead) or "").strip()


def _rule(entity, column, source, mode=OVERWRITE):
    return MappingRule(entity=entity, column=column, source=source, mode=mode)


# Defaults for a new integration. Phone goes to telephone1, which Dynamics labels
# "Business Phone". The owner is set when a record is created and kept on updates.
DEFAULT_MAPPINGS = (
    _rule("lead", "firstname", "first_name"),
    _rule("lead", "lastname", "last_name"),
    _rule("lead", "emailaddress1", "email"),
    _rule("lead", "jobtitle", "job_title"),
    _rule("lead", "companyname", "company"),
    _rule("lead", "telephone1", "phone"),
    _rule("lead", "websiteurl", "website"),
    _rule("lead", "mobilephone", "mobile_phone"),
    _rule("lead", "address1_line1", "street"),
    _rule("lead", "address1_city", "city"),
    _rule("lead", "address1_postalcode", "postal_code"),
    _rule("lead", "address1_stateorprovince", "region"),
    _rule("lead", "address1_country", "country"),
    _rule("lead", "subject", "capture_topic", COMPLETE),
    _rule("lead", OWNER_COLUMN, OWNER_SOURCE, COMPLETE),
    _rule("contact", "firstname", "first_name"),
    _rule("contact", "lastname", "last_name"),
    _rule("contact", "emailaddress1", "email"),
    _rule("contact", "jobtitle", "job_title"),
    _rule("contact", "telephone1", "phone"),
    _rule("contact", "websiteurl", "website"),
    _rule("contact", "mobilephone", "mobile_phone"),
    _rule("contact", OWNER_COLUMN, OWNER_SOURCE, COMPLETE),
    # An existing account's name and website are never renamed from one lead's text.
    _rule("account", "name", "company", COMPLETE),
    _rule("account", "websiteurl", "website", COMPLETE),
    _rule("account", OWNER_COLUMN, OWNER_SOURCE, COMPLETE),
)


@dataclass
class FieldChange:
    """One column the sync writes, with the value before and after."""

    column: str
    old: object
    new: object
    mode: str
    trimmed_from: int | None = None

    def as_log(self):
        entry = {"column": self.column, "old": self.old, "new": self.new, "mode": self.mode}
        if self.trimmed_from is not None:
            entry["trimmed_from_length"] = self.trimmed_from
        return entry


def _is_empty(value):
    return value is None or (isinstance(value, str) and not value.strip())


def merge_value(mode, new, old, *, memo=False):
    """Return the value to write for `mode`, or None when the column stays as it is."""
    if _is_empty(new):
        return None
    if mode == COMPLETE:
        return new if _is_empty(old) else None
    if mode == APPEND and not _is_empty(old):
        if isinstance(old, str) and str(new).lower() in old.lower():
            return None
        separator = MEMO_SEPARATOR if memo else TEXT_SEPARATOR
        return f"{old}{separator}{new}"
    if new == old:
        return None
    return new


# Columns whose values identify a person: a shortened email is a wrong address, so an
# email too long for its column is left out instead of cut.
UNCUT_PREFIXES = ("emailaddress",)


def text_length(value):
    """Return the length of `value` as Dataverse counts it: in UTF-16 code units, so an
    emoji outside the Basic Multilingual Plane counts twice."""
    return len(value.encode("utf-16-le")) // 2


def cut_text(value, max_length):
    """Return `value` cut to at most `max_length` UTF-16 code units, never in the middle
    of a character."""
    return value.encode("utf-16-le")[: max_length * 2].decode("utf-16-le", "ignore")


def column_changes(lead, rules, current, columns, skipped=None):
    """Return the FieldChanges that the mapping `rules` make to a record.

    `current` is the record as Dynamics returned it ({} for a new record). `columns` is
    the table's metadata, {logical name: {"type": ..., "max_length": ...}}: text longer
    than the column's maximum length is cut to fit, and the change records the original
    length. Picklist and whole-number values are sent as integers. A value that cannot be
    written (a fixed value that is not a number, an email too long for its column) is
    left out and described in `skipped`, a list, when one is given.
    """
    changes = []
    for rule in rules:
        if rule.column == OWNER_COLUMN:
            continue
        metadata = columns.get(rule.column, {})
        column_type = metadata.get("type", "String")
        new = rule.value_for(lead)
        if column_type in ("Picklist", "Integer", "State", "Status") and new:
            try:
                new = int(new)
            except ValueError:
                _skip(skipped, rule.column, new, f"'{new}' is not a number; the column "
                      f"takes a numeric value (fix the field mapping)")
                continue
        old = current.get(rule.column)
        value = merge_value(rule.mode, new, old, memo=column_type == "Memo")
        if value is None:
            continue
        change = FieldChange(rule.column, old, value, rule.mode)
        max_length = metadata.get("max_length")
        if isinstance(value, str) and max_length and text_length(value) > max_length:
            if rule.column.startswith(UNCUT_PREFIXES):
                _skip(skipped, rule.column, value, f"longer than the column's {max_length} "
                      f"characters; an email is never shortened")
                continue
            change.trimmed_from = text_length(value)
            change.new = cut_text(value, max_length)
            if change.new == old:
                continue
        changes.append(change)
    return changes


def _skip(skipped, column, value, reason):
    if skipped is not None:
        skipped.append({"column": column, "value": value, "error": reason})
