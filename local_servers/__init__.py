"""Private PostgreSQL and Redis servers on loopback, for tests, CI and benchmarks.

Each server runs from Debian's packages (postgresql, redis-server) in a temporary folder,
on a free port of 127.0.0.1, and is removed when stopped. Nothing here needs the
project's virtualenv, so .ci/run can use it with the system Python:

    python3 -m local_servers run -- make test

starts both, runs the command with DATABASE_URL and REDIS_URL set, then stops them.
"""

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

DATABASE_NAME = "leadsync"
DATABASE_USER = "leadsync"
START_TIMEOUT = 60


class ServerError(RuntimeError):
    """A local server could not be found or started. The message gives the fix."""


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for_port(port, process, name, log_path):
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            break
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.settimeout(0.5)
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    log = ""
    if Path(log_path).exists():
        log = Path(log_path).read_text(errors="replace")[-3000:]
    raise ServerError(f"{name} did not start on 127.0.0.1:{port} within {START_TIMEOUT} s. "
                      f"Its log:\n{log}")


def postgres_bin_dir():
    """Return the newest PostgreSQL bin folder that Debian's packages installed."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda path: int(Path(path).parent.parent.name))
    if not found:
        raise ServerError("PostgreSQL is not installed: /usr/lib/postgresql/*/bin/initdb is "
                          "missing. Install it with 'apt-get install postgresql'.")
    return Path(found[-1]).parent


class PostgresServer:
    """A throwaway PostgreSQL cluster with one database owned by DATABASE_USER."""

    def __init__(self):
        self.bin_dir = postgres_bin_dir()
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="leadsync-postgres-"))
        self.data_dir = self.folder / "data"
        self.log_path = self.folder / "server.log"
        # PostgreSQL refuses to run as root; as root it runs as Debian's postgres user.
        self._run_as = "postgres" if os.geteuid() == 0 else None
        self.url = f"postgres://{DATABASE_USER}@127.0.0.1:{self.port}/{DATABASE_NAME}"

    def _command(self, *arguments):
        command = [str(arguments[0])] + [str(argument) for argument in arguments[1:]]
        if self._run_as:
            return ["runuser", "-u", self._run_as, "--"] + command
        return command

    def start(self):
        if self._run_as:
            try:
                account = pwd.getpwnam(self._run_as)
            except KeyError as error:
                raise ServerError("Running as root needs the 'postgres' user that Debian's "
                                  "postgresql package creates.") from error
            os.chown(self.folder, account.pw_uid, account.pw_gid)
        subprocess.run(
            self._command(self.bin_dir / "initdb", "-D", self.data_dir, "-A", "trust",
                          "-U", "postgres", "-E", "UTF8", "--no-sync"),
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )
        options = (f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.folder} "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                   "-c max_connections=200")
        subprocess.run(
            self._command(self.bin_dir / "pg_ctl", "-D", self.data_dir, "-l", self.log_path,
                          "-o", options, "-w", "-t", START_TIMEOUT, "start"),
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )
        _wait_for_port(self.port, None, "PostgreSQL", self.log_path)
        self._psql(f"CREATE ROLE {DATABASE_USER} LOGIN CREATEDB")
        self._psql(f"CREATE DATABASE {DATABASE_NAME} OWNER {DATABASE_USER}")
        return self

    def _psql(self, statement):
        subprocess.run(
            self._command(self.bin_dir / "psql", "-h", "127.0.0.1", "-p", self.port,
                          "-U", "postgres", "-d", "postgres", "-v", "ON_ERROR_STOP=1",
                          "-q", "-c", statement),
            check=True, stdout=subprocess.DEVNULL,
        )

    def stop(self):
        if self.data_dir.exists():
            subprocess.run(
                self._command(self.bin_dir / "pg_ctl", "-D", self.data_dir, "-m", "immediate",
                              "-w", "stop"),
                stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
            )
        shutil.rmtree(self.folder, ignore_errors=True)


class RedisServer:
    """A throwaway Redis server without persistence."""

    def __init__(self):
        self.binary = shutil.which("redis-server")
        if self.binary is None:
            raise ServerError("redis-server is not installed. Install it with "
                              "'apt-get install redis-server'.")
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="leadsync-redis-"))
        self.log_path = self.folder / "server.log"
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = None

    def start(self):
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(
                [self.binary, "--bind", "127.0.0.1", "--port", str(self.port),
                 "--save", "", "--appendonly", "no", "--dir", str(self.folder)],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        _wait_for_port(self.port, self.process, "Redis", self.log_path)
        return self

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)
