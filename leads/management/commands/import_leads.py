"""Import a vCard or CSV file of leads for one member, as the admin's import does."""

from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from leads.imports import MAX_FILE_SIZE, ImportFileError, import_rows, preview_file
from leads.imports.decoding import check_size
from leads.services import CaptureTeamError, choose_capture_team

# Per-row errors printed before the rest are only counted, to keep the output readable.
MAX_PRINTED_ERRORS = 100


class Command(BaseCommand):
    help = (
        "Import leads from a vCard (.vcf) or CSV file for a member. Prints a preview, then "
        "imports the rows without errors. Rows imported before by the same member are "
        "not created again. Exits with status 1 when the file cannot be read or no row "
        "can be imported."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", help="Path of the vCard or CSV file.")
        parser.add_argument(
            "--member", required=True, metavar="EMAIL",
            help="Email of the member who captured the leads and owns them.",
        )
        parser.add_argument(
            "--team", type=int, metavar="ID",
            help="Team id for the leads; required when the member belongs to several teams.",
        )
        parser.add_argument(
            "--dry-run", action="store_true",
            help="Print the preview without saving anything.",
        )

    def handle(self, *args, **options):
        member = self._member(options["member"])
        try:
            team = choose_capture_team(member=member, team=options["team"])
        except CaptureTeamError as error:
            raise CommandError(str(error)) from error

        path = Path(options["file"])
        content = self._read(path)
        try:
            preview = preview_file(content, file_name=path.name, member=member)
        except ImportFileError as error:
            raise CommandError(f"{path}: {error}") from error

        self._print_preview(preview)
        if not preview.valid_rows:
            raise CommandError("No row can be imported.")
        if options["dry_run"]:
            self.stdout.write("Dry run: nothing was saved.")
            return

        result = import_rows(preview.rows, member=member, team=team, source=preview.source)
        self.stdout.write(
            f"Created {result.created}, already imported {result.already_imported}, "
            f"failed {len(result.failed)}."
        )
        if result.created + result.already_imported == 0:
            raise CommandError("No row could be imported.")

    def _member(self, email):
        users = list(get_user_model().objects.filter(email__iexact=email, is_active=True)[:2])
        if not users:
            raise CommandError(f"No active user has the email {email!r}.")
        if len(users) > 1:
            raise CommandError(f"Several users have the email {email!r}; give them unique emails.")
        return users[0]

    def _read(self, path: Path) -> bytes:
        try:
            # Checked before reading, so that an oversized file is never loaded.
            check_size(path.stat().st_size)
            with path.open("rb") as file:
                return file.read(MAX_FILE_SIZE + 1)
        except ImportFileError as error:
            raise CommandError(f"{path}: {error}") from error
        except OSError as error:
            raise CommandError(f"Cannot read {path}: {error.strerror}.") from error

    def _print_preview(self, preview):
        self.stdout.write(
            f"{preview.file_name} ({preview.format_name}): {len(preview.rows)} rows, "
            f"{len(preview.new_rows)} to import, "
            f"{len(preview.already_imported_rows)} already imported, "
            f"{len(preview.error_rows)} with errors."
        )
        if preview.ignored_columns:
            self.stdout.write(f"Ignored columns: {', '.join(preview.ignored_columns)}")

        for row in preview.error_rows[:MAX_PRINTED_ERRORS]:
            reasons = "; ".join(str(error) for error in row.errors)
            self.stdout.write(f"  {row.location}: {reasons}")
        hidden = len(preview.error_rows) - MAX_PRINTED_ERRORS
        if hidden > 0:
            self.stdout.write(f"  ... and {hidden} more rows with errors.")
