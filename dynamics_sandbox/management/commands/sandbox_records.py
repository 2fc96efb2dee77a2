"""Print the records of one sandbox table."""

import json

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from dynamics_sandbox import schema, seed
from dynamics_sandbox.environments import open_store
from dynamics_sandbox.records import serialize


class Command(BaseCommand):
    help = "Print the records of a sandbox table, such as lead, leads or systemusers."

    def add_arguments(self, parser):
        parser.add_argument("table", help="Logical name (lead) or entity set name (leads).")
        parser.add_argument(
            "--json", action="store_true",
            help="Print a JSON array of the records as the Web API returns them.",
        )
        parser.add_argument(
            "--data-dir", default=str(settings.SANDBOX_DATA_DIR),
            help="Sandbox data folder (default: SANDBOX_DATA_DIR, %(default)s).",
        )
        parser.add_argument(
            "--environment", default=seed.CONTOSO_SALES,
            choices=sorted(seed.ENVIRONMENTS_BY_UNIQUE_NAME),
            help="UniqueName of the environment whose records to print (default: %(default)s).",
        )

    def handle(self, *args, **options):
        table = schema.table_for(options["table"])
        if table is None:
            names = ", ".join(sorted(schema.TABLES) + sorted(schema.TABLES_BY_ENTITY_SET))
            raise CommandError(f"Unknown table {options['table']!r}. Use one of: {names}.")
        store = open_store(options["data_dir"], options["environment"])
        try:
            records = [serialize(table, record) for record in store.records(table.logical_name)]
        finally:
            store.close()

        if options["json"]:
            self.stdout.write(json.dumps(records, indent=2))
            return
        self.stdout.write(f"{len(records)} {table.entity_set}")
        for record in records:
            values = ", ".join(
                f"{name}={value!r}" for name, value in record.items()
                if value is not None and not name.startswith("@")
                and name not in (table.primary_key,)
            )
            self.stdout.write(f"{record[table.primary_key]}  {values}")
