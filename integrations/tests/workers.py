"""Start real `manage.py qcluster` processes on the test database, for end-to-end tests."""

import os
import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings
from django.db import connection as db_connection

MANAGE_PY = Path(settings.BASE_DIR) / "manage.py"


def worker_database_url():
    """Return a DATABASE_URL for the database the tests run on (test_<name> on PostgreSQL)."""
    database = db_connection.settings_dict
    if database["ENGINE"] == "django.db.backends.sqlite3":
        name = str(database["NAME"])
        if name == ":memory:" or "mode=memory" in name:
            pytest.fail("Worker processes need a file database; set TEST NAME for SQLite.")
        return f"sqlite:///{name}"
    if database["ENGINE"] != "django.db.backends.postgresql":
        pytest.fail(f"No worker DATABASE_URL for the {database['ENGINE']} backend.")
    credentials = quote(database["USER"] or "", safe="")
    if database.get("PASSWORD"):
        credentials += ":" + quote(database["PASSWORD"], safe="")
    host = database["HOST"] or "127.0.0.1"
    port = f":{database['PORT']}" if database.get("PORT") else ""
    return f"postgres://{credentials}@{host}{port}/{database['NAME']}"


def worker_environment(sandbox, **overrides):
    """Return the environment of a worker that syncs into `sandbox` from the test database."""
    env = dict(
        os.environ,
        DJANGO_SETTINGS_MODULE="config.settings_test",
        DATABASE_URL=worker_database_url(),
        DYNAMICS_AUTHORITY=sandbox.authority,
        DYNAMICS_CA_BUNDLE=str(sandbox.ca_bundle),
        Q_WORKERS="1",
    )
    env.update({name: str(value) for name, value in overrides.items()})
    return env


def start_worker(env, log_path):
    """Start one qcluster (sentinel, pusher, monitor and workers) in its own process group."""
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        return subprocess.Popen(
            [sys.executable, str(MANAGE_PY), "qcluster"],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )


def kill_worker(process):
    """SIGKILL the whole qcluster at once, as when its machine dies."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def stop_worker(process, timeout=15):
    """Stop a qcluster the normal way, and kill it if it does not stop in time."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        kill_worker(process)
    else:
        # Its children may outlive the sentinel; none may keep the database open.
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
