"""Reading CSV exports (event platforms, LinkedIn, Excel, CRMs) into import rows."""

import csv
import io
import logging
import re

from leads.models import Lead

from .base import ImportedLead, ImportFileError, ImportPreview, RowError, check_row
from .decoding import decode_text

logger = logging.getLogger(__name__)

# Header names per lead field, compared after normalize_header. To support another
# export, add its header names here. "full_name" is split into first and last name when
# the file has neither, and "street2" (a second address line) is appended to street.
HEADER_SYNONYMS = {
    "first_name": [
        "First Name", "Firstname", "Given Name", "Forename", "First", "Vorname", "Prénom",
        "Attendee First Name",
    ],
    "last_name": [
        "Last Name", "Lastname", "Surname", "Family Name", "Last", "Nachname", "Nom",
        "Attendee Last Name",
    ],
    "full_name": ["Full Name", "Name", "Contact Name", "Contact", "Attendee Name"],
    "email": [
        "Email", "E-mail", "Email Address", "E-mail Address", "Work Email",
        "Business Email", "Mail", "Attendee Email", "E-Mail-Adresse",
    ],
    "phone": [
        "Phone", "Work Phone", "Business Phone", "Telephone", "Phone Number",
        "Office Phone", "Tel", "Telefon",
    ],
    "mobile_phone": [
        "Mobile", "Mobile Phone", "Cell", "Cell Phone", "Mobile Number", "Mobil", "Handy",
    ],
    "company": [
        "Company", "Organization", "Organisation", "Account", "Account Name",
        "Company Name", "Employer", "Firma", "Unternehmen",
    ],
    "job_title": ["Title", "Job Title", "Position", "Role", "Jobtitel"],
    "website": ["Website", "URL", "Web", "Web Page", "Webpage", "Company Website"],
    "notes": ["Notes", "Note", "Comments", "Comment", "Description", "Notizen"],
    "street": [
        "Street", "Address", "Street Address", "Address 1", "Address Line 1",
        "Work Address 1", "Business Street", "Straße", "Strasse",
    ],
    "street2": ["Address 2", "Address Line 2", "Work Address 2", "Business Street 2"],
    "city": ["City", "Town", "Work City", "Business City", "Ort", "Stadt"],
    "region": [
        "State", "Region", "Province", "State/Province", "County", "Work State",
        "Business State", "Bundesland",
    ],
    "postal_code": [
        "Zip", "Zip Code", "Postal Code", "Postcode", "Post Code", "Work Zip",
        "Business Postal Code", "PLZ",
    ],
    "country": [
        "Country", "Country/Region", "Work Country", "Business Country", "Land",
    ],
}

# Delimiters that spreadsheet exports use: Excel writes ";" where "," is the decimal
# separator, and "Unicode text" exports use tabs.
DELIMITERS = ",;\t"
# A header row is looked for in this many leading rows, because some exports (LinkedIn
# connections) start with a few lines of notes.
HEADER_SEARCH_ROWS = 10
_SNIFF_SAMPLE_CHARS = 64 * 1024


def normalize_header(header: str) -> str:
    """Return `header` case-folded, without BOM, spaces, underscores, hyphens or dots."""
    return re.sub(r"[\s_\-.]+", "", header.replace("\ufeff", "")).casefold()


_FIELD_BY_HEADER = {
    normalize_header(header): name
    for name, headers in HEADER_SYNONYMS.items() for header in headers
}


def read_csv(content: bytes, *, file_name: str) -> ImportPreview:
    """Read a CSV file into rows. Raises ImportFileError when it has no usable header."""
    text = decode_text(content)
    if not text.strip():
        raise ImportFileError("The file contains no rows.")

    delimiter = _guess_delimiter(text)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header_found = _find_header(reader)
    if header_found is None:
        raise ImportFileError(
            "No known column found in the first rows. Name the columns in the first row, "
            "for example First Name, Last Name, Email, Company."
        )
    headers, columns = header_found
    ignored = [header.strip() for index, header in enumerate(headers)
               if header.strip() and index not in columns]

    preview = ImportPreview(
        file_name=file_name, source=Lead.Source.CSV, rows=[], ignored_columns=ignored
    )
    line = reader.line_num + 1
    try:
        for cells in reader:
            if any(cell.strip() for cell in cells):
                preview.rows.append(_read_row(line, cells, columns))
            line = reader.line_num + 1
    except csv.Error as error:
        preview.rows.append(ImportedLead(
            location=f"line {line}",
            errors=[RowError(None, f"The row could not be read ({error}), so it and the "
                                   f"rows after it were not imported.")],
        ))
    return preview


def _guess_delimiter(text: str) -> str:
    sample = text[:_SNIFF_SAMPLE_CHARS]
    try:
        delimiter = csv.Sniffer().sniff(sample, delimiters=DELIMITERS).delimiter
    except csv.Error:
        delimiter = None
    # The sniffer guesses from the whole sample and can pick a character that appears
    # only inside values, so its guess must also appear in the header line. The header
    # line is the first of the leading lines with a delimiter, which skips notes above it.
    leading_lines = sample.splitlines()[:HEADER_SEARCH_ROWS]
    header_line = next(
        (line for line in leading_lines if any(char in line for char in DELIMITERS)), ""
    )
    if delimiter and delimiter in header_line:
        return delimiter
    counts = {candidate: header_line.count(candidate) for candidate in DELIMITERS}
    best = max(counts, key=counts.get)
    return best if counts[best] else ","


def _find_header(reader) -> tuple[list[str], dict[int, str]] | None:
    """Return the header cells and {column index: field} of the first header-like row.

    A row counts as the header when its cells name two known fields, or one when it
    is the file's first row. Several columns may name one field (Email and Work
    Email), and a row takes the first of them that has a value.
    """
    for position in range(HEADER_SEARCH_ROWS):
        try:
            cells = next(reader)
        except (StopIteration, csv.Error):
            return None
        columns = {}
        for index, header in enumerate(cells):
            name = _FIELD_BY_HEADER.get(normalize_header(header))
            if name:
                columns[index] = name
        known = set(columns.values())
        if len(known) >= 2 or (known and position == 0):
            return cells, columns
    return None


def _read_row(line: int, cells: list[str], columns: dict[int, str]) -> ImportedLead:
    values = {}
    for index, name in columns.items():
        if name not in values and index < len(cells) and cells[index].strip():
            values[name] = cells[index]

    full_name = values.pop("full_name", "").strip()
    if full_name and not (values.get("first_name") or values.get("last_name")):
        first, _, last = full_name.rpartition(" ")
        values["first_name"], values["last_name"] = (first, last) if first else (last, "")
    street2 = values.pop("street2", "").strip()
    if street2:
        values["street"] = ", ".join(part for part in (values.get("street", ""), street2) if part)

    return check_row(ImportedLead(location=f"line {line}", data=values))
