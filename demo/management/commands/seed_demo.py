import json

from django.core.management.base import BaseCommand

from demo.seeding import seed_demo_team


class Command(BaseCommand):
    help = "Create (or reset) the demo team with an admin and two members; print logins."

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true",
                            help="Print the logins as JSON instead of a table.")

    def handle(self, *args, **options):
        team, logins = seed_demo_team()
        if options["json"]:
            self.stdout.write(json.dumps({"team_id": team.pk, "logins": [
                vars(login) for login in logins
            ]}))
            return
        self.stdout.write(f"Demo team '{team.name}' is ready. Logins:")
        for login in logins:
            self.stdout.write(
                f"  {login.role:<6} username={login.username:<7} password={login.password:<12}"
                f" email={login.email:<28} API token={login.api_token}"
            )
