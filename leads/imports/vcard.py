"""Reading vCard files (versions 2.1, 3.0 and 4.0) into import rows.

The file is split into cards here, and each card is parsed by vobject on its own, so a
broken card becomes an error row while the cards around it are still imported.
"""

import logging
import re

import vobject

from leads.models import Lead

from .base import ImportedLead, ImportFileError, ImportPreview, RowError, check_row
from .decoding import decode_line, has_utf16_bom, reject_binary

logger = logging.getLogger(__name__)

_BEGIN = "BEGIN:VCARD"
_END = "END:VCARD"
# The CHARSET parameter of a vCard 2.1 property, such as N;CHARSET=ISO-8859-1:...
_CHARSET = re.compile(r";CHARSET=([A-Za-z0-9_.:-]+)", re.IGNORECASE)
# Telephone types that are neither a business phone nor a mobile phone.
_NOT_VOICE_TYPES = {"FAX", "PAGER", "TEXTPHONE", "MODEM", "BBS", "ISDN"}
_MOBILE_TYPES = {"CELL", "IPHONE"}


def looks_like_vcard(content: bytes) -> bool:
    """Return True if the start of `content` contains a BEGIN:VCARD line."""
    head = content[:4096]
    if has_utf16_bom(head):
        head = head.decode("utf-16", errors="ignore").encode("utf-8")
    return b"begin:vcard" in head.lower()


def read_vcards(content: bytes, *, file_name: str) -> ImportPreview:
    """Read every card in `content`. Raises ImportFileError when no card can be found."""
    lines = _decoded_lines(content)
    rows = []
    for number, card in enumerate(_split_cards(lines), start=1):
        rows.append(_read_card(number, card))
    if not rows:
        raise ImportFileError(
            "No vCard found: the file has no BEGIN:VCARD line. Upload a vCard (.vcf) or "
            "CSV file."
        )
    return ImportPreview(file_name=file_name, source=Lead.Source.VCARD, rows=rows)


class _Card:
    def __init__(self, start_line: int):
        self.start_line = start_line
        self.lines: list[str] = []
        self.closed = False
        # Line numbers whose bytes no encoding could decode.
        self.undecodable: list[int] = []


def _decoded_lines(content: bytes) -> list[str | None]:
    """Return the file's lines as text, None for a line that cannot be decoded.

    Lines are decoded one by one because vCard 2.1 lets each property name its own
    CHARSET, so one file can mix ISO-8859-1 and UTF-8 values.
    """
    if has_utf16_bom(content):
        try:
            text = content.decode("utf-16")
        except UnicodeDecodeError as error:
            raise ImportFileError(
                "The file starts like UTF-16 text but is not valid UTF-16. Export it again "
                "as UTF-8."
            ) from error
        reject_binary(text)
        return text.splitlines()

    if b"\x00" in content:
        reject_binary("\x00")
    content = content.removeprefix(b"\xef\xbb\xbf")
    lines = []
    for raw in content.split(b"\n"):
        raw = raw.rstrip(b"\r")
        charset = None
        name_part = raw.split(b":", 1)[0]
        if b"QUOTED-PRINTABLE" not in name_part.upper():
            # Quoted-printable values are ASCII here; vobject decodes them with CHARSET.
            match = _CHARSET.search(name_part.decode("ascii", errors="ignore"))
            charset = match.group(1) if match else None
        try:
            lines.append(decode_line(raw, charset))
        except UnicodeDecodeError:
            lines.append(None)
    return lines


def _split_cards(lines: list[str | None]) -> list[_Card]:
    cards = []
    card = None
    for number, line in enumerate(lines, start=1):
        marker = (line or "").strip().upper()
        if marker == _BEGIN:
            if card is not None:
                cards.append(card)
            card = _Card(number)
        elif card is None:
            continue
        if line is None:
            card.undecodable.append(number)
            continue
        card.lines.append(line)
        if marker == _END:
            card.closed = True
            cards.append(card)
            card = None
    if card is not None:
        cards.append(card)
    return cards


def _read_card(number: int, card: _Card) -> ImportedLead:
    row = ImportedLead(location=f"card {number} (line {card.start_line})")
    if not card.closed:
        row.errors.append(RowError(
            None, "The card has no END:VCARD line, so the file may be cut off. "
                  "Export the card again."
        ))
        return row
    if card.undecodable:
        row.errors.append(RowError(
            None, f"Line {card.undecodable[0]} is not UTF-8 or Windows-1252 text. "
                  f"Export the card again as UTF-8."
        ))
        return row

    try:
        component = vobject.readOne("\r\n".join(card.lines) + "\r\n", allowQP=True)
        row.data = _card_fields(component)
    # vobject raises ParseError for malformed lines, but also LookupError,
    # UnicodeError, ValueError and others from its decoders on unusual input. One bad
    # card must not stop the file, so any error becomes this row's error.
    except Exception as error:  # noqa: BLE001
        logger.warning("vCard %s could not be parsed: %r", row.location, error)
        row.errors.append(RowError(None, f"The card could not be read: {error}"))
        return row
    return check_row(row)


def _card_fields(card) -> dict[str, str]:
    data = {}
    contents = card.contents

    first_name, last_name = _name(card)
    data["first_name"], data["last_name"] = first_name, last_name

    data["email"] = _strip_scheme(_best_value(contents.get("email", [])), "mailto:")
    voice = [line for line in contents.get("tel", []) if not _types(line) & _NOT_VOICE_TYPES]
    mobiles = [line for line in voice if _types(line) & _MOBILE_TYPES]
    others = [line for line in voice if not _types(line) & _MOBILE_TYPES]
    data["phone"] = _phone(_best_value(others))
    data["mobile_phone"] = _phone(_best_value(mobiles))

    data["company"] = _organization(card)
    data["job_title"] = _first_text(contents.get("title", []))
    data["website"] = _best_value(contents.get("url", []))
    data["notes"] = "\n\n".join(
        text for line in contents.get("note", []) if (text := _text(line.value))
    )
    data.update(_address(contents.get("adr", [])))
    return data


def _name(card) -> tuple[str, str]:
    """Return (first name, last name) from N, or from FN split at its last space."""
    for line in card.contents.get("n", []):
        value = line.value
        if isinstance(value, str):
            parts = value.split(";") + ["", ""]
            family, given = parts[0], parts[1]
        else:
            family, given = _text(value.family), _text(value.given)
        if family.strip() or given.strip():
            return given, family

    full_name = _first_text(card.contents.get("fn", []))
    if not full_name or full_name == _organization(card):
        # Address books set FN to the organization on a company's card.
        return "", ""
    first, _, last = full_name.rpartition(" ")
    return (first, last) if first else (last, "")


def _organization(card) -> str:
    for line in card.contents.get("org", []):
        value = line.value
        first = value[0] if isinstance(value, list) and value else value
        if isinstance(first, str) and first.strip():
            return first.split(";")[0] if isinstance(value, str) else first
    return ""


def _types(line) -> set[str]:
    """Return the upper-case types of a property in any vCard version.

    vCard 2.1 writes bare types (TEL;WORK;VOICE), 3.0 repeats TYPE= (type=CELL;type=pref)
    and 4.0 lists them in one value (TYPE="work,voice") with a separate PREF=1.
    """
    types = {name.upper() for name in line.singletonparams}
    for value in line.params.get("TYPE", []):
        types.update(part.strip().strip('"').upper() for part in value.split(","))
    if "PREF" in line.params:
        types.add("PREF")
    return types


def _best_value(lines) -> str:
    """Return the value of the work line, else the preferred one, else the first."""
    best, best_score = "", None
    for line in lines:
        text = _text(line.value)
        if not text:
            continue
        types = _types(line)
        score = 2 * ("WORK" in types) + ("PREF" in types) - 2 * ("HOME" in types)
        if best_score is None or score > best_score:
            best, best_score = text, score
    return best


def _address(lines) -> dict[str, str]:
    best, best_score = None, None
    for line in lines:
        if isinstance(line.value, str):
            continue
        types = _types(line)
        score = 2 * ("WORK" in types) + ("PREF" in types) - 2 * ("HOME" in types)
        if best_score is None or score > best_score:
            best, best_score = line.value, score
    if best is None:
        return {}
    street_parts = [_text(best.street), _text(best.extended), _text(best.box)]
    return {
        "street": ", ".join(part.replace("\n", ", ") for part in street_parts if part),
        "city": _text(best.city),
        "region": _text(best.region),
        "postal_code": _text(best.code),
        "country": _text(best.country),
    }


def _first_text(lines) -> str:
    for line in lines:
        text = _text(line.value)
        if text:
            return text
    return ""


def _text(value) -> str:
    if isinstance(value, (list, tuple)):
        return " ".join(_text(part) for part in value if _text(part))
    return str(value or "").strip()


def _strip_scheme(value: str, scheme: str) -> str:
    return value[len(scheme):] if value.lower().startswith(scheme) else value


def _phone(value: str) -> str:
    """Return a phone number without the tel: URI form of vCard 4.0 (tel:+1-555;ext=2)."""
    value = _strip_scheme(value, "tel:")
    number, _, extension = value.partition(";ext=")
    return f"{number} ext. {extension}" if extension else number
