import signal
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from demo.processes import ProcessGroup, wait_for_port


def _raise_keyboard_interrupt(signum, frame):
    """Treat SIGTERM like Ctrl-C, so the child processes are stopped either way."""
    raise KeyboardInterrupt


class Command(BaseCommand):
    help = ("Run the Dynamics sandbox, the web server and a django-q2 worker together "
            "until Ctrl-C. Run `migrate` and `seed_demo` first (`make demo` does).")

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=8000,
                            help="Port of the web server on 127.0.0.1 (default 8000).")

    def handle(self, *args, **options):
        port = options["port"]
        group = ProcessGroup()
        signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
        try:
            sandbox = group.start("sandbox", "dynamics_sandbox")
            wait_for_port(settings.SANDBOX_PORT, timeout=30, process=sandbox)
            web = group.start("web", "runserver", f"127.0.0.1:{port}", "--noreload")
            group.start("worker", "qcluster")
            wait_for_port(port, timeout=30, process=web)
            self.stdout.write(self.style.SUCCESS(
                f"\nReady. Sync Settings: http://127.0.0.1:{port}/integrations/settings/ "
                f"(log in as alex / demo-alex, then Connect Dynamics).\n"
                f"API: http://127.0.0.1:{port}/api/leads/ with 'Authorization: Token <token>'.\n"
                f"Sandbox: https://{settings.SANDBOX_HOST}:{settings.SANDBOX_PORT} "
                f"(records: .venv/bin/python manage.py sandbox_records lead --json).\n"
                f"Press Ctrl-C to stop.\n"
            ))
            while True:
                exited = group.failed()
                if exited:
                    raise CommandError(f"{', '.join(exited)} stopped; see its output above.")
                time.sleep(0.5)
        except KeyboardInterrupt:
            self.stdout.write("Stopping...")
        finally:
            group.stop()
