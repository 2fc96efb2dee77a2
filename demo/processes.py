"""Starting and stopping the product's processes together (web, worker, sandbox)."""

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from django.conf import settings

MANAGE_PY = str(Path(settings.BASE_DIR) / "manage.py")


def free_port():
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port, timeout, process=None):
    """Wait until something listens on 127.0.0.1:`port`; raise TimeoutError if not."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{process.args[2:]} exited with code {process.returncode}")
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"Nothing listened on 127.0.0.1:{port} within {timeout} s")


class ProcessGroup:
    """Runs manage.py commands as child processes, prefixing their output with a name."""

    def __init__(self, env=None, output=None):
        self.env = dict(os.environ if env is None else env)
        self.output = output or sys.stdout
        self.processes = {}
        self._lock = threading.Lock()

    def start(self, name, *arguments):
        process = subprocess.Popen(
            [sys.executable, MANAGE_PY, *arguments],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            start_new_session=True,
        )
        self.processes[name] = process
        threading.Thread(target=self._relay, args=(name, process), daemon=True).start()
        return process

    def run(self, *arguments):
        """Run a manage.py command to completion; raise CalledProcessError on failure."""
        return subprocess.run(
            [sys.executable, MANAGE_PY, *arguments], env=self.env, check=True,
            capture_output=True, text=True,
        )

    def _relay(self, name, process):
        for line in process.stdout:
            with self._lock:
                self.output.write(f"[{name}] {line}")
                self.output.flush()

    def failed(self):
        """Return the names of processes that have exited."""
        return [name for name, process in self.processes.items() if process.poll() is not None]

    def stop(self, timeout=10):
        """Send SIGTERM to every process group, then SIGKILL to any still running."""
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for process in self.processes.values():
            remaining = max(0.1, deadline - time.monotonic())
            try:
                process.wait(remaining)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
