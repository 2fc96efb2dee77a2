"""Benchmark: bulk sync against the one-lead-at-a-time path, on the sandbox.

    .venv/bin/python bench/sync_benchmark.py [--leads 1000] [--latency-ms 100]
        [--operation-ms 2] [--single-sample 50]

It starts the sandbox in this process with a latency model: a round trip per HTTP
request plus an execution time per operation, also inside $batch. Then it connects a
team through the real sign-in and captures leads with companies and notes, half of whom
are already in Dynamics. A sample goes through the one-lead path (one task per lead) and all
the others through the bulk path (bulk tasks of 200 leads), one worker each. It prints
leads per second, HTTP requests per lead and Dataverse operations per lead for both.
"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def setup_django(work_dir):
    """Configure Django on a fresh SQLite database in `work_dir` and migrate it."""
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings_test"
    os.environ["DATABASE_URL"] = f"sqlite:///{work_dir / 'bench.sqlite3'}"
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import warnings

    import django
    from django.core.management import call_command

    # The sign-in returns its code in the query string; see pytest.ini for the reason.
    warnings.filterwarnings("ignore", message="response_mode='form_post' is recommended")

    django.setup()
    call_command("migrate", verbosity=0)


def connect(sandbox):
    """Create a team with an admin and a member, and connect it through the sign-in."""
    from django.conf import settings

    from dynamics_sandbox.testing import sign_in_with_form
    from integrations import connecting, connection
    from teams.models import Membership
    from teams.services import add_member, create_team
    from django.contrib.auth import get_user_model

    settings.DYNAMICS_AUTHORITY = sandbox.authority
    settings.DYNAMICS_ORG_URL = sandbox.base_url
    settings.DYNAMICS_CA_BUNDLE = str(sandbox.ca_bundle)
    users = get_user_model().objects
    admin = users.create_user("bench-admin", "alex.admin@contoso.example", "x")
    member = users.create_user("bench-member", "sam.sales@contoso.example", "x")
    team = create_team("Benchmark team")
    add_member(team, admin, Membership.Role.ADMIN)
    add_member(team, member)
    integration = connecting.get_or_create_team_integration(team)
    flow = connection.begin_sign_in(integration.org_url,
                                    "http://127.0.0.1:8000/integrations/callback/")
    redirect = sign_in_with_form(flow["auth_uri"], admin.email, str(sandbox.ca_bundle))
    integration = connecting.connect_integration(
        integration, flow, dict(parse_qsl(urlsplit(redirect).query)), admin)
    return team, member, integration


def capture(team, member, count, prefix, companies):
    """Create `count` leads with companies from a pool and notes; return them."""
    from leads.models import Lead

    leads = [
        Lead(team=team, captured_by=member, first_name="Bench", last_name=f"{prefix} {index}",
             email=f"{prefix}.{index}@bench{index % companies}.example",
             phone=f"+1 415 555 {index % 10000:04d}", company=f"Bench Company {index % companies}",
             job_title="Buyer", notes=f"Met at the benchmark booth ({prefix} {index}).")
        for index in range(count)
    ]
    return Lead.objects.bulk_create(leads)


def seed_existing(integration, leads):
    """Put the given leads into Dynamics beforehand, as earlier syncs would have."""
    from integrations import connection
    from integrations.client import ChangeSet, Operation

    client = connection.client_for(integration)
    operations = [Operation("POST", "leads", {"lastname": lead.last_name,
                                              "emailaddress1": lead.email})
                  for lead in leads]
    for start in range(0, len(operations), 500):
        client.batch([ChangeSet([operation]) for operation in operations[start:start + 500]])


def measure(sandbox, name, run, lead_count):
    sandbox.store.clear_request_log()
    started = time.monotonic()
    run()
    seconds = time.monotonic() - started
    counts = sandbox.store.request_counts()
    return {
        "path": name,
        "leads": lead_count,
        "seconds": round(seconds, 2),
        "leads_per_second": round(lead_count / seconds, 2),
        "http_requests_per_lead": round(counts["http_requests"] / lead_count, 4),
        "operations_per_lead": round(counts["operations"] / lead_count, 2),
    }


def run_benchmark(leads=1000, latency_ms=100, operation_ms=2, single_sample=50,
                  work_dir=None):
    """Run both paths and return their figures and the checks of every lead."""
    work_dir = Path(work_dir or tempfile.mkdtemp(prefix="leadsync-bench-"))
    setup_django(work_dir)
    from dynamics_sandbox.testing import start_sandbox
    from integrations import services
    from leads.models import Lead

    sandbox = start_sandbox(work_dir / "sandbox", latency_ms=latency_ms,
                            operation_ms=operation_ms, rate_limit_requests=1_000_000,
                            rate_limit_execution_ms=10**12)
    try:
        team, member, integration = connect(sandbox)
        companies = max(1, leads // 10)
        single_leads = capture(team, member, single_sample, "single", companies)
        bulk_leads = capture(team, member, leads, "bulk", companies)
        seed_existing(integration, single_leads[::2] + bulk_leads[::2])

        single = measure(sandbox, "one lead per task", lambda: [
            services.sync_lead_now(lead.pk) for lead in single_leads], single_sample)

        def run_bulk():
            ids = [lead.pk for lead in bulk_leads]
            for start in range(0, len(ids), services.BULK_TASK_SIZE):
                services.sync_leads_now(ids[start:start + services.BULK_TASK_SIZE])

        bulk = measure(sandbox, "bulk tasks of 200", run_bulk, leads)
        statuses = Lead.objects.values_list("sync_status", flat=True)
        return {
            "settings": {"leads": leads, "latency_ms": latency_ms,
                         "operation_ms": operation_ms, "single_sample": single_sample},
            "single": single,
            "bulk": bulk,
            "speedup": round(bulk["leads_per_second"] / single["leads_per_second"], 1),
            "not_synced": sum(1 for status in statuses if status != "synced"),
            "lead_records": len(sandbox.store.records("lead")),
            "notes": len(sandbox.store.records("annotation")),
        }
    finally:
        sandbox.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=1000,
                        help="Leads for the bulk path (default 1000).")
    parser.add_argument("--latency-ms", type=float, default=100,
                        help="Round trip per HTTP request, in ms (default 100).")
    parser.add_argument("--operation-ms", type=float, default=2,
                        help="Server execution time per operation, in ms (default 2).")
    parser.add_argument("--single-sample", type=int, default=50,
                        help="Leads for the one-lead path (default 50).")
    parser.add_argument("--json", action="store_true", help="Print the figures as JSON.")
    options = parser.parse_args()
    figures = run_benchmark(options.leads, options.latency_ms, options.operation_ms,
                            options.single_sample)
    if options.json:
        print(json.dumps(figures, indent=2))
        sys.exit(1 if check(figures) else 0)
    print(f"{'path':<20}{'leads':>7}{'seconds':>10}{'leads/s':>10}{'HTTP/lead':>12}"
          f"{'ops/lead':>10}")
    for row in (figures["single"], figures["bulk"]):
        print(f"{row['path']:<20}{row['leads']:>7}{row['seconds']:>10}"
              f"{row['leads_per_second']:>10}{row['http_requests_per_lead']:>12}"
              f"{row['operations_per_lead']:>10}")
    print(f"bulk is {figures['speedup']}x faster; {figures['not_synced']} leads not synced; "
          f"{figures['lead_records']} lead records and {figures['notes']} notes in Dynamics")
    problems = check(figures)
    for problem in problems:
        print(f"FAILED {problem}", file=sys.stderr)
    sys.exit(1 if problems else 0)


def check(figures):
    """Return what is wrong with a run: every lead must land once with one note."""
    expected = figures["settings"]["leads"] + figures["settings"]["single_sample"]
    problems = []
    if figures["not_synced"]:
        problems.append(f"{figures['not_synced']} leads did not reach synced")
    if figures["lead_records"] != expected:
        problems.append(f"{figures['lead_records']} lead records, expected {expected}")
    if figures["notes"] != expected:
        problems.append(f"{figures['notes']} notes, expected {expected}")
    return problems


if __name__ == "__main__":
    main()
