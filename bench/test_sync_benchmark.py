"""Runs the sync benchmark at a small size, as CI does, and checks its counts.

Timings are reported, never asserted: they depend on the machine.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARK = Path(__file__).with_name("sync_benchmark.py")


@pytest.fixture(scope="module")
def figures(tmp_path_factory):
    output = subprocess.run(
        [sys.executable, str(BENCHMARK), "--leads", "240", "--single-sample", "12",
         "--latency-ms", "5", "--operation-ms", "1", "--json"],
        capture_output=True, text=True, timeout=600, check=True,
    )
    return json.loads(output.stdout)


def test_benchmark_syncs_every_lead(figures):
    assert figures["not_synced"] == 0


def test_benchmark_one_record_per_lead(figures):
    assert figures["lead_records"] == 240 + 12


def test_benchmark_one_note_per_lead(figures):
    assert figures["notes"] == 240 + 12


def test_bulk_requests_per_lead(figures):
    assert figures["bulk"]["http_requests_per_lead"] <= 0.05


def test_single_lead_requests(figures):
    assert figures["single"]["http_requests_per_lead"] <= 3
