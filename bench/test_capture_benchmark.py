"""Runs the capture benchmark at a small size, as CI does, and checks its counts.

The run uses the backend the suite runs on: SQLite by default, PostgreSQL and Redis in
the scale-out run. Timings are reported, never asserted: they depend on the machine.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARK = Path(__file__).with_name("capture_benchmark.py")
REQUESTS = 150


@pytest.fixture(scope="module")
def runs():
    command = [sys.executable, str(BENCHMARK), "--requests", str(REQUESTS),
               "--concurrency", "6", "--dynamics-latency-ms", "0", "200", "--json"]
    if os.environ.get("DATABASE_URL", "").startswith("postgres"):
        command.append("--postgres")
    output = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert output.returncode == 0, output.stderr[-3000:]
    return json.loads(output.stdout)


def test_capture_benchmark_one_run_per_latency(runs):
    assert [run["dynamics_latency_ms"] for run in runs] == [0, 200]


def test_capture_benchmark_every_post_created(runs):
    for run in runs:
        assert run["created"] == REQUESTS
        assert run["errors"] == 0


def test_capture_benchmark_stores_each_lead(runs):
    for run in runs:
        # The benchmark's warm-up posts 50 leads before the measured ones.
        assert run["leads_stored"] == REQUESTS + 50


def test_capture_benchmark_reports_percentiles(runs):
    for run in runs:
        assert 0 < run["p50_ms"] <= run["p95_ms"] <= run["p99_ms"]
        assert run["requests_per_second"] > 0
