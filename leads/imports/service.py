"""Previewing and importing a vCard or CSV file of leads for one member."""

import logging
from collections.abc import Iterable

from django.core.exceptions import ValidationError

from leads.models import Lead
from leads.services import capture_lead_once

from .base import ImportedLead, ImportFileError, ImportPreview, ImportResult
from .csv_import import read_csv
from .decoding import check_size
from .vcard import looks_like_vcard, read_vcards

logger = logging.getLogger(__name__)

VCARD_EXTENSIONS = (".vcf", ".vcard")
# Client references per query when looking up rows imported before. SQLite allows
# 999 query parameters in versions before 3.32.
_LOOKUP_CHUNK = 500


def read_file(content: bytes, *, file_name: str = "") -> ImportPreview:
    """Parse an import file into rows with their errors, without saving anything.

    A file with BEGIN:VCARD near its start, or named .vcf or .vcard, is read as vCards,
    anything else as CSV. Raises ImportFileError when the whole file is unusable:
    empty, larger than MAX_FILE_SIZE, binary, or in neither format.
    """
    check_size(len(content))
    if looks_like_vcard(content) or file_name.lower().endswith(VCARD_EXTENSIONS):
        return read_vcards(content, file_name=file_name)
    return read_csv(content, file_name=file_name)


def preview_file(content: bytes, *, file_name: str = "", member) -> ImportPreview:
    """Read a file like read_file and mark the rows that `member` imported before."""
    preview = read_file(content, file_name=file_name)
    mark_already_imported(preview.rows, member=member)
    return preview


def mark_already_imported(rows: list[ImportedLead], *, member) -> None:
    """Set `already_imported` on the valid rows whose client reference `member` has."""
    references = [row.client_reference for row in rows if row.is_valid]
    known = set()
    for start in range(0, len(references), _LOOKUP_CHUNK):
        known.update(Lead.objects.filter(
            captured_by=member, client_reference__in=references[start:start + _LOOKUP_CHUNK]
        ).values_list("client_reference", flat=True))
    for row in rows:
        row.already_imported = row.is_valid and row.client_reference in known


def import_rows(rows: Iterable[ImportedLead], *, member, team, source: str) -> ImportResult:
    """Capture each valid row as a lead of `member` in `team`, once per client reference.

    Every row goes through capture_lead_once, so an imported lead is validated and its
    sync scheduled like a lead from the API. A row that `member` imported before
    returns the existing lead and counts as already imported. Rows with errors and rows
    that capture rejects are listed in `failed` and do not stop the others.
    """
    # Imported leads are synced in bulk tasks, not one task each.
    from integrations.services import syncs_in_bulk

    result = ImportResult()
    with syncs_in_bulk():
        _import_each(rows, member, team, source, result)
    return result


def _import_each(rows, member, team, source, result):
    for row in rows:
        if not row.is_valid:
            result.failed.append((row.location, "; ".join(str(error) for error in row.errors)))
            continue
        try:
            lead, created = capture_lead_once(
                member=member, team=team, data=row.data, source=source,
                client_reference=row.client_reference,
            )
        except ValidationError as error:
            reason = "; ".join(error.messages)
            logger.warning("Import row %s of member %s rejected: %s",
                           row.location, member.pk, reason)
            result.failed.append((row.location, reason))
            continue
        if created:
            result.created += 1
            result.created_lead_ids.append(lead.pk)
        else:
            result.already_imported += 1


def import_file(
    content: bytes, *, file_name: str = "", member, team, dry_run: bool = False,
) -> tuple[ImportPreview, ImportResult | None]:
    """Preview a file and, unless `dry_run`, import its rows for `member` in `team`.

    Returns the preview and the import's result (None for a dry run). Raises
    ImportFileError for an unusable file, and what capture_lead_once raises about the
    member and team (NotTeamMemberError).
    """
    preview = preview_file(content, file_name=file_name, member=member)
    if dry_run:
        return preview, None

    result = import_rows(preview.rows, member=member, team=team, source=preview.source)
    logger.info(
        "Imported %s for member %s in team %s: %d created, %d already imported, %d failed",
        preview.format_name, member.pk, team.pk, result.created, result.already_imported,
        len(result.failed),
    )
    return preview, result

