"""Management commands: sandbox_records and dynamics_sandbox as a child process."""

import json
import signal
import subprocess
import sys

import pytest
import requests
from django.core.management import CommandError, call_command

from dynamics_sandbox import seed
from dynamics_sandbox.testing import MANAGE_PY, start_sandbox, start_sandbox_process


@pytest.fixture
def data_dir_with_lead(tmp_path):
    """A separate data folder with one lead created through the Web API."""
    running = start_sandbox(tmp_path)
    try:
        session = requests.Session()
        session.trust_env = False
        session.verify = running.ca_bundle
        token = running.store.add_grant(
            "access", seed.SAM_ID, running.client_id, 3600,
            {"audience": running.base_url, "scope": ""},
        )
        response = session.post(
            running.base_url + "/api/data/v9.2/leads",
            json={"lastname": "Lee", "emailaddress1": "lee@example.org"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert response.status_code == 204
    finally:
        running.stop()
    return tmp_path


def test_records_json(data_dir_with_lead, capsys):
    call_command("sandbox_records", "leads", "--json", "--data-dir", str(data_dir_with_lead))
    records = json.loads(capsys.readouterr().out)
    assert len(records) == 1
    assert records[0]["emailaddress1"] == "lee@example.org"
    assert records[0]["_ownerid_value"] == seed.SAM_ID
    assert "leadid" in records[0]
    assert "createdon" in records[0]


def test_records_logical_name(data_dir_with_lead, capsys):
    call_command("sandbox_records", "lead", "--data-dir", str(data_dir_with_lead))
    output = capsys.readouterr().out
    assert output.startswith("1 leads")
    assert "lee@example.org" in output


def test_records_systemusers(tmp_path, capsys):
    call_command("sandbox_records", "systemusers", "--json", "--data-dir", str(tmp_path))
    emails = {user["internalemailaddress"] for user in json.loads(capsys.readouterr().out)}
    assert emails == {user["internalemailaddress"] for user in seed.USERS}


def test_records_unknown_table(tmp_path):
    with pytest.raises(CommandError, match="Unknown table 'Lead'"):
        call_command("sandbox_records", "Lead", "--data-dir", str(tmp_path))


def test_data_dir_reused(tmp_path):
    first = start_sandbox(tmp_path)
    first_ca = (tmp_path / "cert.pem").read_bytes()
    first.stop()
    second = start_sandbox(tmp_path)
    users = second.store.records("systemuser")
    second.stop()
    assert (tmp_path / "cert.pem").read_bytes() == first_ca
    assert len(users) == len(seed.USERS)


@pytest.mark.e2e
def test_process_serves_https(tmp_path):
    process, base_url = start_sandbox_process(tmp_path)
    try:
        session = requests.Session()
        session.trust_env = False
        response = session.get(
            f"{base_url}/sandbox-tenant/v2.0/.well-known/openid-configuration",
            verify=str(tmp_path / "cert.pem"), timeout=10,
        )
        assert response.status_code == 200
        assert base_url.startswith("https://127.0.0.1:")
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)
    assert process.returncode == 0


@pytest.mark.e2e
def test_process_rejects_public_host(tmp_path):
    result = subprocess.run(
        [sys.executable, str(MANAGE_PY), "dynamics_sandbox", "--host", "0.0.0.0",
         "--port", "0", "--data-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode != 0
    assert "loopback only" in result.stderr
