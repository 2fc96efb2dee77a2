"""Rows read from an import file, their checks, and what the preview and import report.

Both readers (vcard.py and csv_import.py) turn a file into ImportedLead rows whose
`data` contains capture fields. `check_row` then validates each row with the Lead model's
own field rules and gives it a client reference derived from its values.
"""

import hashlib
import json
import re
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError

from leads.models import Lead
from leads.services import CAPTURE_FIELDS, IDENTIFYING_FIELDS

# 20 MB (decimal) covers about 100,000 CSV rows or a few hundred vCards with photos. A
# larger file would keep a web request busy for minutes just reading and checking it.
MAX_FILE_SIZE = 20_000_000
MAX_FILE_SIZE_TEXT = "20 MB"

REFERENCE_PREFIX = "import:"

# Fields whose line breaks are kept. Elsewhere any run of whitespace becomes one space.
MULTILINE_FIELDS = {"notes"}


class ImportFileError(Exception):
    """The whole file cannot be read: too large, empty, binary or in no known format."""


@dataclass(frozen=True)
class RowError:
    """One problem with one row. `field` is None for a problem with the whole row."""

    field: str | None
    message: str

    def __str__(self):
        return f"{self.field}: {self.message}" if self.field else self.message


@dataclass
class ImportedLead:
    """One card or CSV row, as capture fields plus the problems found in it."""

    # Position of the row in the file, for messages: "line 7" or "card 3 (line 21)".
    location: str
    data: dict[str, str] = field(default_factory=dict)
    errors: list[RowError] = field(default_factory=list)
    client_reference: str = ""
    # Set by the preview: the member already has a lead with this client reference.
    already_imported: bool = False

    @property
    def is_valid(self) -> bool:
        return not self.errors

    @property
    def display_name(self) -> str:
        name = f"{self.data.get('first_name', '')} {self.data.get('last_name', '')}".strip()
        return name or self.data.get("email") or self.data.get("company") or "-"

    def to_dict(self) -> dict:
        return {
            "location": self.location,
            "data": self.data,
            "errors": [[error.field, error.message] for error in self.errors],
            "client_reference": self.client_reference,
            "already_imported": self.already_imported,
        }

    @classmethod
    def from_dict(cls, values: dict) -> "ImportedLead":
        return cls(
            location=values["location"],
            data=values["data"],
            errors=[RowError(name, message) for name, message in values["errors"]],
            client_reference=values["client_reference"],
            already_imported=values["already_imported"],
        )


@dataclass
class ImportPreview:
    """A file read into rows, before anything is saved."""

    file_name: str
    # Lead.Source.VCARD or Lead.Source.CSV.
    source: str
    rows: list[ImportedLead]
    # CSV headers that match no lead field, in file order.
    ignored_columns: list[str] = field(default_factory=list)

    @property
    def format_name(self) -> str:
        return "vCard" if self.source == Lead.Source.VCARD else "CSV"

    @property
    def valid_rows(self) -> list[ImportedLead]:
        return [row for row in self.rows if row.is_valid]

    @property
    def new_rows(self) -> list[ImportedLead]:
        return [row for row in self.rows if row.is_valid and not row.already_imported]

    @property
    def already_imported_rows(self) -> list[ImportedLead]:
        return [row for row in self.rows if row.is_valid and row.already_imported]

    @property
    def error_rows(self) -> list[ImportedLead]:
        return [row for row in self.rows if not row.is_valid]


@dataclass
class ImportResult:
    """Outcome of importing rows: counts of new and known leads, and the failures."""

    created: int = 0
    already_imported: int = 0
    # (row location, reason) for rows with errors and rows that capture rejected.
    failed: list[tuple[str, str]] = field(default_factory=list)
    created_lead_ids: list[int] = field(default_factory=list)

    def add(self, other: "ImportResult") -> None:
        self.created += other.created
        self.already_imported += other.already_imported
        self.failed.extend(other.failed)
        self.created_lead_ids.extend(other.created_lead_ids)


def clean_value(name: str, value) -> str:
    """Return `value` as stripped text, with whitespace runs collapsed outside notes."""
    text = "" if value is None else str(value)
    if name in MULTILINE_FIELDS:
        lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
        return "\n".join(lines).strip()
    return " ".join(text.split())


def check_row(row: ImportedLead) -> ImportedLead:
    """Clean and validate `row.data` in place, then set its client reference.

    Values are checked with the Lead model's field rules (length, email format), as a
    capture through the API would be, so that a row that passes here can be saved.
    """
    data = {}
    for name, value in row.data.items():
        if name not in CAPTURE_FIELDS:
            raise ValueError(f"Import readers must only produce capture fields, not {name!r}.")
        text = clean_value(name, value)
        if text:
            data[name] = text
    row.data = data

    for name, value in data.items():
        row.errors.extend(_field_errors(name, value))
    if not any(data.get(name) for name in IDENTIFYING_FIELDS):
        row.errors.append(RowError(
            None, f"No {_identifying_text()} found, so the row cannot become a lead."
        ))
    row.client_reference = client_reference_for(data)
    return row


def _identifying_text() -> str:
    names = [str(Lead._meta.get_field(name).verbose_name) for name in IDENTIFYING_FIELDS]
    return f"{', '.join(names[:-1])} or {names[-1]}"


def _field_errors(name: str, value: str) -> list[RowError]:
    model_field = Lead._meta.get_field(name)
    if model_field.max_length and len(value) > model_field.max_length:
        return [RowError(name, f"{len(value)} characters, longer than the "
                               f"{model_field.max_length} allowed.")]
    if name == "website" and _has_unsafe_scheme(value):
        return [RowError(name, f"Invalid website '{value[:100]}': use a domain such as "
                               f"example.com or an http(s) URL.")]
    try:
        model_field.clean(value, None)
    except ValidationError as error:
        return [RowError(name, f"'{value[:100]}': {' '.join(error.messages)}")]
    return []


_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):(?!\d)")


def _has_unsafe_scheme(value: str) -> bool:
    # The same rule as the API: a scheme other than http(s), such as javascript:, could
    # run code where Dynamics or the admin shows the website as a link. "host:8080"
    # has a port, not a scheme.
    match = _SCHEME.match(value)
    return bool(match) and match.group(1).lower() not in ("http", "https")


def client_reference_for(data: dict[str, str]) -> str:
    """Return "import:" plus the SHA-256 of the row's normalized capture fields.

    The hash covers the values, not the file's bytes or column order, so a file
    imported again, or the same person with the same values in another file or
    format, maps to the same reference and the member's first lead.
    """
    normalized = {
        name: clean_value(name, data[name]).casefold()
        for name in CAPTURE_FIELDS if data.get(name)
    }
    payload = json.dumps(normalized, sort_keys=True, ensure_ascii=False)
    return REFERENCE_PREFIX + hashlib.sha256(payload.encode("utf-8")).hexdigest()
