"""Benchmark: leads posted concurrently to POST /api/leads/ on loopback.

    .venv/bin/python bench/capture_benchmark.py [--requests 2000] [--concurrency 16]
        [--web-workers 2] [--dynamics-latency-ms 0 300] [--postgres] [--json]

Each run starts three processes in a fresh folder. The sandbox adds the given latency to
each Dynamics request, gunicorn serves the product, and one qcluster with two workers
syncs the captured leads while the load runs (Auto Sync is on). The load
comes from threads in this process, each with its own keep-alive session; every member
of the team has its own token. It reports requests per second and the p50, p95 and p99
latency of the captures, per Dynamics latency, so the runs show whether a capture waits
on Dynamics.

The database is a new SQLite file with django-q2's ORM broker (the embedded default),
or with --postgres a private PostgreSQL and Redis (see local_servers) for the database,
the task broker and the cache.
"""

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dynamics_sandbox.testing import start_sandbox_process  # noqa: E402
from local_servers import PostgresServer, RedisServer, free_port  # noqa: E402

MEMBERS = 20
WARM_UP_REQUESTS = 50
START_TIMEOUT = 60
# A valid Fernet key for the benchmark's throwaway token caches.
TOKEN_CACHE_KEY = "n7ZG3m0x4Z1oJc1W8cJmQ0v5S2aYbUo0Vd3fJp6kQyE="


def product_environment(work_dir, sandbox_url, database_url, redis_url):
    """Return the environment of the web and worker processes of one run."""
    env = dict(
        os.environ,
        LEADSYNC_ENV_FILE="",
        DJANGO_SETTINGS_MODULE="config.settings",
        SECRET_KEY=secrets.token_urlsafe(40),
        TOKEN_CACHE_KEY=TOKEN_CACHE_KEY,
        DEBUG="false",
        ALLOWED_HOSTS="127.0.0.1",
        VAR_DIR=str(work_dir / "var"),
        DATABASE_URL=database_url,
        DYNAMICS_AUTHORITY=f"{sandbox_url}/sandbox-tenant",
        DYNAMICS_ORG_URL=sandbox_url,
        DYNAMICS_DISCOVERY_URL=f"{sandbox_url}/globaldisco",
        DYNAMICS_CA_BUNDLE=str(work_dir / "sandbox" / "cert.pem"),
        # The benchmark measures capacity, so the per-member capture throttle is lifted.
        LEAD_CAPTURE_RATE="1000000/min",
        LOG_LEVEL="WARNING",
        Q_WORKERS="2",
    )
    env.pop("REDIS_URL", None)
    if redis_url:
        env["REDIS_URL"] = redis_url
    return env


def manage(env, *arguments, capture=False):
    return subprocess.run([sys.executable, str(ROOT / "manage.py"), *arguments], env=env,
                          cwd=ROOT, check=True, text=True,
                          capture_output=capture)


def seed(env):
    """Create the team, its members and tokens, and connect it; return the tokens."""
    output = manage(env, "shell", "-c", SEED_SCRIPT, capture=True).stdout
    return json.loads(output.strip().splitlines()[-1])


# Runs in `manage.py shell` with the run's settings: one admin connects the team through
# the sandbox's sign-in form, and every member gets an API token.
SEED_SCRIPT = """
import json
from urllib.parse import parse_qsl, urlsplit
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from dynamics_sandbox.testing import sign_in_with_form
from integrations import connecting, connection
from teams.models import Membership
from teams.services import add_member, create_team
from django.conf import settings

users = get_user_model().objects
team = create_team("Capture benchmark")
admin = users.create_user("bench-admin", "alex.admin@contoso.example", "x")
add_member(team, admin, Membership.Role.ADMIN)
integration = connecting.get_or_create_team_integration(team)
flow = connection.begin_sign_in(integration.org_url,
                                "http://127.0.0.1:8000/integrations/callback/")
location = sign_in_with_form(flow["auth_uri"], admin.email, settings.DYNAMICS_CA_BUNDLE)
connecting.connect_integration(integration, flow, dict(parse_qsl(urlsplit(location).query)),
                             admin)
tokens = []
for index in range(%d):
    member = users.create_user(f"bench-member-{index}", f"member{index}@example.org", "x")
    add_member(team, member)
    tokens.append(Token.objects.create(user=member).key)
print(json.dumps(tokens))
""" % MEMBERS


COUNT_SCRIPT = """
import json
from collections import Counter
from leads.models import Lead
print(json.dumps(Counter(Lead.objects.values_list("sync_status", flat=True))))
"""


class Processes:
    """Child processes of one run, stopped together."""

    def __init__(self):
        self.children = []

    def start(self, command, env, log_path):
        with open(log_path, "w") as log:
            process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=log,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        self.children.append(process)
        return process

    def add(self, process):
        self.children.append(process)

    def stop(self):
        for process in reversed(self.children):
            if process.poll() is None:
                process.terminate()
        for process in reversed(self.children):
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_for_web(url, process):
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with status {process.returncode}")
        try:
            requests.get(url, timeout=5)
            return
        except (requests.ConnectionError, requests.Timeout):
            time.sleep(0.2)
    raise RuntimeError(f"gunicorn did not respond at {url} within {START_TIMEOUT} s")


def post_leads(url, tokens, count, concurrency, first_index):
    """Post `count` leads from `concurrency` threads; return (latencies in s, statuses)."""
    latencies = []
    statuses = []
    lock = threading.Lock()
    next_index = iter(range(first_index, first_index + count))

    def run():
        session = requests.Session()
        session.trust_env = False
        while True:
            with lock:
                index = next(next_index, None)
            if index is None:
                return
            payload = {"first_name": "Load", "last_name": f"Visitor {index}",
                       "email": f"load.{index}@visitor{index % 50}.example",
                       "company": f"Load Company {index % 50}",
                       "notes": f"Booth visit {index}"}
            started = time.perf_counter()
            response = session.post(
                url, json=payload, timeout=60,
                headers={"Authorization": f"Token {tokens[index % len(tokens)]}"})
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
                statuses.append(response.status_code)

    threads = [threading.Thread(target=run) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, statuses


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def run_once(requests_count, concurrency, web_workers, latency_ms, use_postgres, keep=False):
    """Run one load test and return its figures. The run's folder, with the logs of its
    processes, is deleted afterwards unless `keep` is true."""
    work_dir = Path(tempfile.mkdtemp(prefix="leadsync-capture-"))
    (work_dir / "var").mkdir()
    processes = Processes()
    servers = []
    try:
        if use_postgres:
            servers.append(PostgresServer().start())
            servers.append(RedisServer().start())
            database_url, redis_url = servers[0].url, servers[1].url
        else:
            database_url, redis_url = f"sqlite:///{work_dir / 'leadsync.sqlite3'}", ""

        sandbox_env = dict(os.environ, LEADSYNC_ENV_FILE="", SANDBOX_LATENCY_MS=str(latency_ms),
                           SANDBOX_RATE_LIMIT_REQUESTS="1000000",
                           SANDBOX_RATE_LIMIT_EXECUTION_MS="1000000000000",
                           SECRET_KEY="capture-benchmark", TOKEN_CACHE_KEY=TOKEN_CACHE_KEY)
        sandbox, sandbox_url = start_sandbox_process(work_dir / "sandbox", env=sandbox_env)
        processes.add(sandbox)
        env = product_environment(work_dir, sandbox_url, database_url, redis_url)
        manage(env, "migrate", "--noinput", capture=True)
        tokens = seed(env)

        port = free_port()
        web = processes.start(
            [sys.executable, "-m", "gunicorn", "config.wsgi:application", "--workers",
             str(web_workers), "--bind", f"127.0.0.1:{port}", "--keep-alive", "5",
             "--worker-class", "gthread", "--threads", "4"],
            env, work_dir / "web.log")
        processes.start([sys.executable, str(ROOT / "manage.py"), "qcluster"], env,
                        work_dir / "worker.log")
        url = f"http://127.0.0.1:{port}/api/leads/"
        wait_for_web(url, web)

        post_leads(url, tokens, WARM_UP_REQUESTS, concurrency, 0)
        started = time.perf_counter()
        latencies, statuses = post_leads(url, tokens, requests_count, concurrency,
                                         WARM_UP_REQUESTS)
        seconds = time.perf_counter() - started
        counts = json.loads(manage(env, "shell", "-c", COUNT_SCRIPT,
                                   capture=True).stdout.strip().splitlines()[-1])
        return {
            "database": "postgresql+redis" if use_postgres else "sqlite+orm",
            "dynamics_latency_ms": latency_ms,
            "requests": requests_count,
            "concurrency": concurrency,
            "web_workers": web_workers,
            "seconds": round(seconds, 2),
            "requests_per_second": round(requests_count / seconds, 1),
            "p50_ms": round(percentile(latencies, 0.50) * 1000, 1),
            "p95_ms": round(percentile(latencies, 0.95) * 1000, 1),
            "p99_ms": round(percentile(latencies, 0.99) * 1000, 1),
            "mean_ms": round(statistics.mean(latencies) * 1000, 1),
            "created": statuses.count(201),
            "errors": len(statuses) - statuses.count(201),
            "leads_stored": sum(counts.values()),
            "synced_by_end": counts.get("synced", 0),
        }
    finally:
        processes.stop()
        for server in reversed(servers):
            server.stop()
        if keep:
            print(f"Kept the run's folder {work_dir}", file=sys.stderr)
        else:
            shutil.rmtree(work_dir, ignore_errors=True)


def check(figures):
    """Return what is wrong with a run: every post must create exactly one lead."""
    problems = []
    expected = figures["requests"] + WARM_UP_REQUESTS
    if figures["errors"]:
        problems.append(f"{figures['errors']} captures did not return 201")
    if figures["leads_stored"] != expected:
        problems.append(f"{figures['leads_stored']} leads stored, expected {expected}")
    return problems


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000,
                        help="Captures to post per run, after a warm-up (default 2000).")
    parser.add_argument("--concurrency", type=int, default=16,
                        help="Client threads posting at once (default 16).")
    parser.add_argument("--web-workers", type=int, default=2,
                        help="gunicorn worker processes, 4 threads each (default 2).")
    parser.add_argument("--dynamics-latency-ms", type=float, nargs="+", default=[0, 300],
                        help="Sandbox latency per Dynamics request, in ms; one run each "
                             "(default 0 300).")
    parser.add_argument("--postgres", action="store_true",
                        help="Use private PostgreSQL and Redis servers instead of SQLite.")
    parser.add_argument("--keep", action="store_true",
                        help="Keep each run's folder (logs, database, sandbox data).")
    parser.add_argument("--json", action="store_true", help="Print the figures as JSON.")
    options = parser.parse_args()

    runs = [run_once(options.requests, options.concurrency, options.web_workers, latency,
                     options.postgres, options.keep)
            for latency in options.dynamics_latency_ms]
    problems = [f"{run['database']} at {run['dynamics_latency_ms']} ms: {problem}"
                for run in runs for problem in check(run)]
    if options.json:
        print(json.dumps(runs, indent=2))
    else:
        print(f"{'database':<18}{'Dynamics ms':>12}{'captures':>10}{'req/s':>8}{'p50 ms':>8}"
              f"{'p95 ms':>8}{'p99 ms':>8}{'errors':>8}{'synced':>8}")
        for run in runs:
            print(f"{run['database']:<18}{run['dynamics_latency_ms']:>12g}{run['requests']:>10}"
                  f"{run['requests_per_second']:>8}{run['p50_ms']:>8}{run['p95_ms']:>8}"
                  f"{run['p99_ms']:>8}{run['errors']:>8}{run['synced_by_end']:>8}")
    for problem in problems:
        print(f"FAILED {problem}", file=sys.stderr)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
