import sys
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand

from demo.smoke import SmokeFailure, SmokeRun


class Command(BaseCommand):
    help = ("Run the main job headless: start sandbox, web and worker on fresh data in "
            "var/smoke, connect through the sign-in form, capture samples/leads.json "
            "through the API and check every lead in the sandbox. Exits 1 on any failure.")

    def add_arguments(self, parser):
        parser.add_argument("--work-dir", default=str(Path(settings.VAR_DIR) / "smoke"),
                            help="Folder for the run's database and sandbox data "
                                 "(emptied first; default var/smoke).")
        parser.add_argument("--timeout", type=float, default=180,
                            help="Seconds to wait for all leads to sync (default 180).")

    def handle(self, *args, **options):
        run = SmokeRun(options["work_dir"], self.stdout, sync_timeout=options["timeout"])
        try:
            report = run.run()
        except SmokeFailure as error:
            self.stderr.write(f"Smoke run failed: {error}")
            sys.exit(1)
        for failure in report.failures:
            self.stderr.write(f"FAILED {failure}")
        self.stdout.write(report.summary())
        if report.failed or report.synced != report.captured:
            sys.exit(1)
