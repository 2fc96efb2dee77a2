"""vCard and CSV imports of leads: read a file into rows, preview them, then capture."""

from .base import (
    MAX_FILE_SIZE,
    MAX_FILE_SIZE_TEXT,
    ImportedLead,
    ImportFileError,
    ImportPreview,
    ImportResult,
    RowError,
)
from .service import import_file, import_rows, mark_already_imported, preview_file, read_file

__all__ = [
    "MAX_FILE_SIZE", "MAX_FILE_SIZE_TEXT", "ImportedLead", "ImportFileError",
    "ImportPreview", "ImportResult", "RowError", "import_file", "import_rows",
    "mark_already_imported", "preview_file", "read_file",
]
