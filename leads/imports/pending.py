"""Imports between upload and confirm, kept as JSON files under VAR_DIR/imports.

The admin reads a file once at upload and keeps its checked rows here, so that the
preview, each batch of the import and the summary do not parse the file again.
"""

import json
import logging
import os
import re
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings

from .base import ImportedLead, ImportPreview, ImportResult

logger = logging.getLogger(__name__)

# Pending imports older than this are deleted when a new one is saved.
MAX_AGE_SECONDS = 24 * 60 * 60
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{20,64}$")


@dataclass
class PendingImport:
    """Uploaded rows with the importing user, the capturing member, the team and progress."""

    token: str
    user_id: int
    member_id: int
    team_id: int
    preview: ImportPreview
    # Index of the first row that no batch has imported yet.
    next_row: int = 0
    result: ImportResult = field(default_factory=ImportResult)

    @property
    def finished(self) -> bool:
        return self.next_row >= len(self.preview.rows)

    def to_dict(self) -> dict:
        return {
            "user_id": self.user_id,
            "member_id": self.member_id,
            "team_id": self.team_id,
            "file_name": self.preview.file_name,
            "source": self.preview.source,
            "ignored_columns": self.preview.ignored_columns,
            "rows": [row.to_dict() for row in self.preview.rows],
            "next_row": self.next_row,
            "result": {
                "created": self.result.created,
                "already_imported": self.result.already_imported,
                "failed": self.result.failed,
            },
        }


def _directory() -> Path:
    # NOTE: a local folder works for one web server. Several servers behind a load
    # balancer need a shared VAR_DIR, or the confirm step can miss the upload.
    return Path(settings.VAR_DIR) / "imports"


def _path(token: str) -> Path:
    return _directory() / f"{token}.json"


def create_pending(*, user_id: int, member_id: int, team_id: int,
                   preview: ImportPreview) -> PendingImport:
    """Save a new pending import under a random token and return it."""
    _delete_expired()
    pending = PendingImport(
        token=secrets.token_urlsafe(24), user_id=user_id, member_id=member_id,
        team_id=team_id, preview=preview,
    )
    save_pending(pending)
    return pending


def save_pending(pending: PendingImport) -> None:
    directory = _directory()
    directory.mkdir(parents=True, exist_ok=True)
    temporary = directory / f"{pending.token}.tmp"
    temporary.write_text(json.dumps(pending.to_dict()), encoding="utf-8")
    # A rename replaces the file in one step, so a reader never sees half of it.
    os.replace(temporary, _path(pending.token))


def load_pending(token: str, *, user_id: int) -> PendingImport | None:
    """Return the pending import `token` of user `user_id`, or None if there is none."""
    if not _TOKEN.match(token):
        return None
    try:
        values = json.loads(_path(token).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    if values["user_id"] != user_id:
        return None

    preview = ImportPreview(
        file_name=values["file_name"], source=values["source"],
        rows=[ImportedLead.from_dict(row) for row in values["rows"]],
        ignored_columns=values["ignored_columns"],
    )
    result = ImportResult(
        created=values["result"]["created"],
        already_imported=values["result"]["already_imported"],
        failed=[tuple(item) for item in values["result"]["failed"]],
    )
    return PendingImport(
        token=token, user_id=values["user_id"], member_id=values["member_id"],
        team_id=values["team_id"], preview=preview, next_row=values["next_row"],
        result=result,
    )


def _delete_expired() -> None:
    directory = _directory()
    if not directory.is_dir():
        return
    oldest = time.time() - MAX_AGE_SECONDS
    for path in directory.glob("*.json"):
        try:
            if path.stat().st_mtime < oldest:
                path.unlink()
        except FileNotFoundError:
            # Another request deleted it first.
            continue
