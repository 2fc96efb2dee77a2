"""The smoke run: the whole product path, headless, on the leads in samples/.

It starts the sandbox, the web server and a worker on fresh data, and connects the demo
team through the real sign-in (the sandbox's form, submitted over HTTP). Then it captures
every sample lead through the REST API, waits for the syncs and checks each Dynamics
record.
"""

import json
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests
from django.conf import settings

from dynamics_sandbox.testing import sign_in_with_form

from .processes import ProcessGroup, free_port, wait_for_port

SAMPLES_FILE = Path(settings.BASE_DIR) / "samples" / "leads.json"

# Lead API field -> Dynamics lead column, as the default mappings write them.
CHECKED_COLUMNS = {
    "first_name": "firstname",
    "last_name": "lastname",
    "email": "emailaddress1",
    "phone": "telephone1",
    "company": "companyname",
    "job_title": "jobtitle",
    "website": "websiteurl",
}


@dataclass
class SmokeReport:
    captured: int = 0
    synced: int = 0
    failures: list = field(default_factory=list)

    @property
    def failed(self):
        return len(self.failures)

    def summary(self):
        return f"{self.captured} captured, {self.synced} synced, {self.failed} failed"


def same_value(lead_field, stored, sent):
    """Compare a Dynamics value with the value sent. Capture lower-cases an email's
    domain, as email addresses compare case-insensitively there."""
    sent = sent.strip()
    if lead_field == "email":
        return (stored or "").lower() == sent.lower()
    return stored == sent


class SmokeRun:
    """One smoke run in its own folder under var/, with its own ports."""

    def __init__(self, work_dir, output, sync_timeout=180):
        self.work_dir = Path(work_dir)
        self.output = output
        self.sync_timeout = sync_timeout
        self.sandbox_port = free_port()
        self.web_port = free_port()
        self.web_url = f"http://127.0.0.1:{self.web_port}"
        self.sandbox_url = f"https://127.0.0.1:{self.sandbox_port}"
        self.ca_bundle = self.work_dir / "sandbox" / "cert.pem"
        self.group = ProcessGroup(env=self._child_env(), output=output)

    def _child_env(self):
        import os

        env = {key: value for key, value in os.environ.items()
               if not key.startswith(("DYNAMICS_", "SANDBOX_", "DATABASE_URL"))}
        env.update({
            # No .env file: every setting the children need is passed here, so a .env
            # pointing at a real org or database cannot leak into the smoke run.
            "LEADSYNC_ENV_FILE": str(self.work_dir / "no.env"),
            "SECRET_KEY": settings.SECRET_KEY,
            "TOKEN_CACHE_KEY": settings.TOKEN_CACHE_KEY,
            "DEBUG": "false",
            "VAR_DIR": str(self.work_dir),
            "SANDBOX_PORT": str(self.sandbox_port),
            "SANDBOX_DATA_DIR": str(self.work_dir / "sandbox"),
            "DYNAMICS_AUTHORITY": f"{self.sandbox_url}/sandbox-tenant",
            "DYNAMICS_ORG_URL": self.sandbox_url,
            "DYNAMICS_CA_BUNDLE": str(self.ca_bundle),
            "Q_WORKERS": "2",
        })
        return env

    def run(self):
        if self.work_dir.exists():
            shutil.rmtree(self.work_dir)
        self.work_dir.mkdir(parents=True)
        try:
            return self._run()
        finally:
            self.group.stop()

    def _run(self):
        self.log("Preparing a fresh database in %s" % self.work_dir)
        self.group.run("migrate", "--noinput")
        seeded = json.loads(self.group.run("seed_demo", "--json").stdout)
        logins = {login["username"]: login for login in seeded["logins"]}

        sandbox = self.group.start("sandbox", "dynamics_sandbox")
        wait_for_port(self.sandbox_port, timeout=60, process=sandbox)
        web = self.group.start("web", "runserver", f"127.0.0.1:{self.web_port}", "--noreload")
        self.group.start("worker", "qcluster")
        wait_for_port(self.web_port, timeout=60, process=web)

        admin = logins["alex"]
        self.connect(seeded["team_id"], admin)
        report = SmokeReport()
        samples = json.loads(SAMPLES_FILE.read_text(encoding="utf-8"))
        members = [logins["alex"], logins["sam"], logins["jordan"]]
        captured = self.capture(samples, members, report)
        final = self.wait_for_syncs(captured, report)
        self.check_records(captured, final, logins, admin, report)
        return report

    def log(self, message):
        self.output.write(f"[smoke] {message}\n")
        self.output.flush()

    # -- Steps ---------------------------------------------------------------------

    def connect(self, team_id, admin):
        """Sign in as the team admin and connect Dynamics through the sandbox's form."""
        browser = requests.Session()
        browser.trust_env = False
        login_page = browser.get(f"{self.web_url}/admin/login/", timeout=10)
        login_page.raise_for_status()
        response = browser.post(
            f"{self.web_url}/admin/login/?next=/integrations/settings/",
            data={"username": admin["username"], "password": admin["password"],
                  "csrfmiddlewaretoken": browser.cookies["csrftoken"],
                  "next": "/integrations/settings/"},
            timeout=10,
        )
        response.raise_for_status()
        if "sessionid" not in browser.cookies:
            raise SmokeFailure(f"Logging in as {admin['username']} failed.")

        response = browser.post(
            f"{self.web_url}/integrations/teams/{team_id}/connect/",
            data={"csrfmiddlewaretoken": browser.cookies["csrftoken"]},
            allow_redirects=False, timeout=30,
        )
        authorize_url = response.headers.get("Location", "")
        if response.status_code != 302 or not authorize_url.startswith(self.sandbox_url):
            raise SmokeFailure(f"Connect Dynamics did not redirect to the sandbox sign-in "
                               f"(HTTP {response.status_code}, Location {authorize_url!r}).")
        callback_url = sign_in_with_form(authorize_url, admin["email"], str(self.ca_bundle))
        page = browser.get(callback_url, timeout=60)
        page.raise_for_status()
        if "Connected to Dynamics as" not in page.text:
            error = re.search(r'class="error">(.*?)<', page.text, re.S)
            raise SmokeFailure("Connecting Dynamics failed: "
                               + (error.group(1).strip() if error else "no confirmation shown"))
        self.log(f"Connected Dynamics as {admin['email']}")

    def capture(self, samples, members, report):
        """POST every sample through the API, rotating between members."""
        captured = []
        for index, sample in enumerate(samples):
            member = members[index % len(members)]
            response = requests.post(
                f"{self.web_url}/api/leads/", json=sample, timeout=10,
                headers={"Authorization": f"Token {member['api_token']}"},
            )
            if response.status_code != 201:
                report.failures.append(f"Sample {index}: capture answered HTTP "
                                       f"{response.status_code}: {response.text[:300]}")
                continue
            captured.append((sample, member, response.json()["id"]))
            report.captured += 1
        self.log(f"Captured {report.captured} of {len(samples)} sample leads")
        return captured

    def wait_for_syncs(self, captured, report):
        """Poll the API until every captured lead is synced or failed; return their rows."""
        deadline = time.monotonic() + self.sync_timeout
        final = {}
        while time.monotonic() < deadline:
            for sample, member, lead_id in captured:
                if lead_id in final:
                    continue
                row = requests.get(
                    f"{self.web_url}/api/leads/{lead_id}/", timeout=10,
                    headers={"Authorization": f"Token {member['api_token']}"},
                ).json()
                if row["sync_status"] in ("synced", "failed"):
                    final[lead_id] = row
            if len(final) == len(captured):
                break
            if self.group.failed():
                raise SmokeFailure(f"{', '.join(self.group.failed())} stopped during the run.")
            time.sleep(0.5)
        for sample, member, lead_id in captured:
            row = final.get(lead_id)
            if row is None:
                report.failures.append(f"Lead {lead_id}: not synced within "
                                       f"{self.sync_timeout} s")
            elif row["sync_status"] == "failed":
                report.failures.append(f"Lead {lead_id}: sync failed: {row['last_sync_error']}")
        return final

    def check_records(self, captured, final, logins, admin, report):
        """Compare each synced lead with its record read back from the sandbox."""
        records = {row["leadid"]: row for row in self.sandbox_rows("lead")}
        users = {row["systemuserid"]: row for row in self.sandbox_rows("systemuser")}
        accounts = {row["accountid"]: row for row in self.sandbox_rows("account")}
        notes = {}
        for note in self.sandbox_rows("annotation"):
            notes.setdefault(note.get("_objectid_value"), []).append(note)
        # Application users have no mailbox, so their email is null.
        user_emails = {row["internalemailaddress"].lower() for row in users.values()
                       if row.get("internalemailaddress")}
        for sample, member, lead_id in captured:
            row = final.get(lead_id)
            if row is None or row["sync_status"] != "synced":
                continue
            record = records.get(row["dynamics_record_id"])
            if record is None:
                report.failures.append(f"Lead {lead_id}: Dynamics lead "
                                       f"{row['dynamics_record_id']} not found in the sandbox")
                continue
            problems = [
                f"{column}={record.get(column)!r}, expected {sample[lead_field].strip()!r}"
                for lead_field, column in CHECKED_COLUMNS.items()
                if sample.get(lead_field, "").strip()
                and not same_value(lead_field, record.get(column), sample[lead_field])
            ]
            owner = users.get(record.get("_ownerid_value"), {})
            expected_owner = (member["email"] if member["email"].lower() in user_emails
                              else admin["email"])
            if owner.get("internalemailaddress", "").lower() != expected_owner.lower():
                problems.append(f"owner {owner.get('internalemailaddress')!r}, "
                                f"expected {expected_owner!r}")
            problems += self.account_problems(sample, record, accounts)
            problems += self.note_problems(sample, record, notes.get(record["leadid"], []))
            if problems:
                report.failures.append(f"Lead {lead_id}: " + "; ".join(problems))
            else:
                report.synced += 1

    @staticmethod
    def account_problems(sample, record, accounts):
        """Return problems unless a lead with a company links an account of that name."""
        company = sample.get("company", "").strip()
        if not company:
            return []
        account = accounts.get(record.get("_parentaccountid_value"))
        if account is None:
            return [f"no account linked, expected one named {company!r}"]
        if account["name"].lower() != company.lower():
            return [f"account {account['name']!r}, expected {company!r}"]
        return []

    @staticmethod
    def note_problems(sample, record, notes):
        """Return problems unless a lead with notes has one Dynamics note of that text."""
        text = sample.get("notes", "").strip()
        if not text:
            return [f"{len(notes)} unexpected note(s)"] if notes else []
        if len(notes) != 1 or notes[0].get("notetext") != text:
            return [f"{len(notes)} note(s), expected one with the lead's notes"]
        return []

    def sandbox_rows(self, table):
        return json.loads(self.group.run("sandbox_records", table, "--json").stdout)


class SmokeFailure(Exception):
    """A step of the smoke run failed before the leads could be checked."""
