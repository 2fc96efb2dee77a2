"""Run the local Dynamics 365 stand-in until Ctrl-C or SIGTERM."""

import signal
import threading

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from dynamics_sandbox.server import SandboxServer, SandboxSettings


class Command(BaseCommand):
    help = (
        "Serve the Dynamics sandbox (Dataverse Web API and Microsoft sign-in) over HTTPS "
        "on loopback until Ctrl-C or SIGTERM."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--host", default=settings.SANDBOX_HOST,
            help="Loopback address to listen on (default: SANDBOX_HOST, %(default)s).",
        )
        parser.add_argument(
            "--port", type=int, default=settings.SANDBOX_PORT,
            help="TCP port; 0 picks a free one (default: SANDBOX_PORT, %(default)s).",
        )
        parser.add_argument(
            "--data-dir", default=str(settings.SANDBOX_DATA_DIR),
            help="Folder for the certificate and the records database "
                 "(default: SANDBOX_DATA_DIR, %(default)s).",
        )

    def handle(self, *args, **options):
        try:
            sandbox_settings = SandboxSettings.from_environment(
                options["data_dir"], host=options["host"], port=options["port"]
            )
            server = SandboxServer(sandbox_settings)
        except (ValueError, OSError) as error:
            raise CommandError(f"The sandbox could not start: {error}") from error

        def stop(signum, frame):
            # shutdown() waits for serve_forever to return, so it runs in another thread.
            threading.Thread(target=server.shutdown, daemon=True).start()

        signal.signal(signal.SIGTERM, stop)
        self.stdout.write(f"Dynamics sandbox listening on {server.base_url}")
        for environment in server.environments[1:]:
            self.stdout.write(
                f"Dynamics sandbox environment {environment.unique_name} "
                f"({environment.name}) listening on {environment.url}"
            )
        self.stdout.flush()
        try:
            server.serve_forever(poll_interval=0.2)
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
            self.stdout.write("Dynamics sandbox stopped")
            self.stdout.flush()
