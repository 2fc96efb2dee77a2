"""The sync rules as a table of cases, run against the sandbox over HTTPS.

Each case seeds Dynamics records, captures a lead, syncs it and asserts the exact
records in Dynamics afterwards.
"""

import pytest
from django.contrib.auth import get_user_model

from integrations import connection, services
from integrations.models import FieldMapping, Integration, SyncLog
from dynamics_sandbox.seed import EVENT_SALES_TEAM_ID
from integrations.sync import engine, reads, writes
from leads.models import Lead
from teams.tests.factories import make_lead, make_member

from .conftest import SANDBOX_ADMIN, SANDBOX_SALES, unique_digits, unique_email

pytestmark = pytest.mark.django_db

ENTITY_SETS = {"lead": "leads", "contact": "contacts", "account": "accounts"}


class Org:
    """The connected team's Dynamics org, seen through the product's own client."""

    def __init__(self, connected_team, sandbox):
        self.setup = connected_team
        self.sandbox = sandbox
        self.client = connection.client_for(connected_team.integration)

    @property
    def integration(self):
        return Integration.objects.get(pk=self.setup.integration.pk)

    def configure(self, **fields):
        Integration.objects.filter(pk=self.setup.integration.pk).update(**fields)

    def seed(self, entity, **values):
        return self.client.create(ENTITY_SETS[entity], values)

    def set_modified(self, entity, record_id, modifiedon):
        row = self.sandbox.store.get(entity, record_id)
        row["modifiedon"] = modifiedon
        self.sandbox.store.replace(entity, row)

    def record(self, entity, record_id):
        return self.sandbox.store.get(entity, record_id)

    def records(self, entity, **equal):
        return [row for row in self.sandbox.store.records(entity)
                if all((row.get(key) or "").lower() == value.lower()
                       for key, value in equal.items())]

    def capture(self, member=None, **fields):
        fields.setdefault("first_name", "")
        fields.setdefault("last_name", "")
        return make_lead(self.setup.team, member or self.setup.member, **fields)

    def sync(self, lead):
        log = services.sync_lead_now(lead.pk)
        lead.refresh_from_db()
        return log


@pytest.fixture
def org(connected_team, sandbox):
    return Org(connected_team, sandbox)


def joined(log):
    return " | ".join(log.path)


# -- Matching ----------------------------------------------------------------------------

def test_creates_lead_with_every_default_column(org):
    email = unique_email("ada")
    company = f"Analytical Engines {unique_digits(6)}"
    phone = f"+44 20 7946 {unique_digits(4)}"
    lead = org.capture(first_name="Ada", last_name="Lovelace", email=email,
                       phone=phone, company=company,
                       job_title="Mathematician", website="https://engines.example")

    log = org.sync(lead)

    record = org.record("lead", lead.dynamics_record_id)
    accounts = org.records("account", name=company)
    assert log.outcome == SyncLog.Outcome.CREATED
    assert record["firstname"] == "Ada"
    assert record["lastname"] == "Lovelace"
    assert record["emailaddress1"] == email
    assert record["telephone1"] == phone
    assert record["companyname"] == company
    assert record["jobtitle"] == "Mathematician"
    assert record["websiteurl"] == "https://engines.example"
    assert record["subject"].startswith("Captured by ")
    assert record["_ownerid_value"] == org.integration.dynamics_user_id
    assert len(accounts) == 1
    assert record["_parentaccountid_value"] == accounts[0]["accountid"]
    assert accounts[0]["websiteurl"] == "https://engines.example"


@pytest.mark.parametrize("stored, captured", [
    ("  {email}  ", "{upper}"),
    ("{upper}", "  {email} "),
])
def test_email_match_ignores_case_and_space(org, stored, captured):
    email = unique_email("case")
    existing = org.seed("lead", lastname="Case", emailaddress1=email.upper())
    lead = org.capture(last_name="Case", email=captured.format(email=email,
                                                               upper=email.upper()))
    log = org.sync(lead)
    assert log.outcome == SyncLog.Outcome.UPDATED
    assert lead.dynamics_record_id == existing


@pytest.mark.parametrize("region, stored, captured", [
    ("US", "+1 ({a}) 555-{b}", "{a}555{b}"),
    ("US", "{a}555{b}", "+1 {a} 555 {b}"),
    ("US", "{a}.555.{b}", "({a}) 555-{b}"),
    ("GB", "020 7946 {b}", "+44 20 7946 {b}"),
    ("GB", "+44 (0)20 7946 {b}", "020 7946 {b}"),
    ("FR", "01 42 68 {c} {d}", "+33 1 42 68 {c}{d}"),
])
def test_phone_match_across_formats(org, region, stored, captured):
    org.setup.team.default_phone_region = region
    org.setup.team.save()
    digits = {"a": "2" + unique_digits(2), "b": unique_digits(4), "c": unique_digits(2),
              "d": unique_digits(2)}
    existing = org.seed("lead", lastname="Phone", telephone1=stored.format(**digits))
    lead = org.capture(last_name="Phone", phone=captured.format(**digits))

    log = org.sync(lead)

    assert log.outcome == SyncLog.Outcome.UPDATED, joined(log)
    assert lead.dynamics_record_id == existing
    assert "matches by phone" in joined(log)


def test_phone_match_on_mobile_column(org):
    digits = unique_digits(4)
    existing = org.seed("lead", lastname="Mobile", mobilephone=f"+1 415 555 {digits}")
    lead = org.capture(last_name="Mobile", phone=f"(415) 555-{digits}")
    org.sync(lead)
    assert lead.dynamics_record_id == existing


def test_unparseable_phone_is_kept_as_text(org):
    email = unique_email("text-phone")
    lead = org.capture(last_name="Text", email=email, phone="call me after 5")

    log = org.sync(lead)

    record = org.record("lead", lead.dynamics_record_id)
    assert log.outcome == SyncLog.Outcome.CREATED
    assert record["telephone1"] == "call me after 5"
    assert "not used for matching" in joined(log)


def test_shared_phone_different_emails_no_match(org):
    digits = unique_digits(4)
    org.seed("lead", lastname="Grace", emailaddress1=unique_email("grace"),
              telephone1=f"+1 415 555 {digits}")
    lead = org.capture(last_name="Colleague", email=unique_email("colleague"),
                       phone=f"(415) 555-{digits}")
    log = org.sync(lead)
    assert log.outcome == SyncLog.Outcome.CREATED


def test_phone_match_when_record_has_no_email(org):
    digits = unique_digits(4)
    existing = org.seed("lead", lastname="NoEmail", telephone1=f"+1 415 555 {digits}")
    lead = org.capture(last_name="NoEmail", email=unique_email("now-known"),
                       phone=f"(415) 555-{digits}")
    org.sync(lead)
    assert lead.dynamics_record_id == existing


def test_parallel_syncs_create_one_lead(org):
    """Two workers plan a create for the same person before either writes."""
    email = unique_email("race")
    first = org.capture(last_name="Race", email=email)
    second = org.capture(last_name="Race", email=email, job_title="Second")
    sync_settings = services.sync_settings_for(org.integration, first)
    first_plan = engine.decide(first, sync_settings,
                               reads.gather(first, sync_settings, org.client))
    second_plan = engine.decide(second, sync_settings,
                                reads.gather(second, sync_settings, org.client))
    writes.apply(first_plan, org.client)

    with pytest.raises(engine.RecordExists):
        writes.apply(second_plan, org.client)
    log = org.sync(second)

    assert first_plan.action == second_plan.action == "create"
    assert log.outcome == SyncLog.Outcome.UPDATED
    assert len(org.records("lead", emailaddress1=email)) == 1
    assert org.record("lead", first_plan.record_id)["jobtitle"] == "Second"


def test_different_number_same_last_digits(org):
    digits = unique_digits(4)
    org.seed("lead", lastname="Other", telephone1=f"+1 212 555 {digits}")
    lead = org.capture(last_name="Mine", phone=f"+1 415 555 {digits}")
    log = org.sync(lead)
    assert log.outcome == SyncLog.Outcome.CREATED


@pytest.mark.parametrize("local_part", ["o'neil", "dana+expo", "a&b#c", "zoë"])
def test_reserved_characters_in_email(org, local_part):
    email = f"{local_part}.{unique_digits(8)}@example.org"
    existing = org.seed("lead", lastname="Reserved", emailaddress1=email)
    lead = org.capture(last_name="Reserved", email=email)
    log = org.sync(lead)
    assert log.outcome == SyncLog.Outcome.UPDATED
    assert lead.dynamics_record_id == existing


def test_crafted_email_matches_nothing(org):
    org.seed("lead", lastname="Victim", emailaddress1=unique_email("victim"))
    lead = org.capture(last_name="Crafted", email="x' or emailaddress1 ne 'y")
    log = org.sync(lead)
    assert log.outcome == SyncLog.Outcome.CREATED


def test_ambiguous_match_picks_newest_open(org):
    email = unique_email("many")
    older = org.seed("lead", lastname="Older", emailaddress1=email)
    newer = org.seed("lead", lastname="Newer", emailaddress1=email)
    qualified = org.seed("lead", lastname="Qualified", emailaddress1=email)
    org.client.update("leads", qualified, {"statecode": 1, "statuscode": 3})
    org.set_modified("lead", older, "2026-01-01T00:00:00Z")
    org.set_modified("lead", newer, "2026-02-01T00:00:00Z")
    org.set_modified("lead", qualified, "2026-03-01T00:00:00Z")
    lead = org.capture(last_name="Newer", email=email, job_title="Chosen")

    log = org.sync(lead)

    assert lead.dynamics_record_id == newer
    assert org.record("lead", newer)["jobtitle"] == "Chosen"
    assert org.record("lead", older).get("jobtitle") is None
    assert sorted(log.details["other_matches"]) == sorted([older, qualified])
    assert "2 other leads match too" in joined(log)


# -- Decision tree -----------------------------------------------------------------------

def test_qualified_lead_left_unchanged(org):
    email = unique_email("qualified")
    qualified = org.seed("lead", lastname="Qualified", emailaddress1=email)
    org.client.update("leads", qualified, {"statecode": 1, "statuscode": 3})
    lead = org.capture(last_name="Qualified", email=email, job_title="New title")

    log = org.sync(lead)

    assert log.outcome == SyncLog.Outcome.SKIPPED
    assert lead.sync_status == Lead.SyncStatus.SKIPPED
    assert "Update existing contacts" in lead.last_sync_error
    assert org.record("lead", qualified).get("jobtitle") is None
    assert len(org.records("lead", emailaddress1=email)) == 1


def test_qualified_lead_updates_its_contact(org):
    org.configure(update_existing_contacts=True)
    email = unique_email("qualified-contact")
    contact = org.seed("contact", lastname="Converted", emailaddress1=email)
    qualified = org.seed("lead", lastname="Converted", emailaddress1=email,
                         **{"parentcontactid@odata.bind": f"/contacts({contact})"})
    org.client.update("leads", qualified, {"statecode": 1, "statuscode": 3})
    lead = org.capture(last_name="Converted", email=email, job_title="Promoted")

    log = org.sync(lead)

    assert log.outcome == SyncLog.Outcome.UPDATED
    assert lead.dynamics_entity == "contact"
    assert lead.dynamics_record_id == contact
    assert org.record("contact", contact)["jobtitle"] == "Promoted"
    assert org.record("lead", qualified).get("jobtitle") is None


def test_qualified_lead_without_contact_skipped(org):
    org.configure(update_existing_contacts=True)
    email = unique_email("qualified-alone")
    qualified = org.seed("lead", lastname="Alone", emailaddress1=email)
    org.client.update("leads", qualified, {"statecode": 1, "statuscode": 3})
    lead = org.capture(last_name="Alone", email=email)
    log = org.sync(lead)
    assert log.outcome == SyncLog.Outcome.SKIPPED
    assert "no contact matches" in lead.last_sync_error


def test_contact_updated_when_no_lead(org):
    org.configure(update_existing_contacts=True)
    email = unique_email("contact-only")
    contact = org.seed("contact", firstname="Old", lastname="Contact", emailaddress1=email)
    lead = org.capture(first_name="New", last_name="Contact", email=email,
                       job_title="Buyer")

    log = org.sync(lead)

    record = org.record("contact", contact)
    assert log.outcome == SyncLog.Outcome.UPDATED
    assert lead.dynamics_entity == "contact"
    assert record["firstname"] == "New"
    assert record["jobtitle"] == "Buyer"
    assert org.records("lead", emailaddress1=email) == []


def test_contact_ignored_when_setting_off(org):
    email = unique_email("contact-off")
    org.seed("contact", lastname="Contact", emailaddress1=email)
    lead = org.capture(last_name="Contact", email=email)
    log = org.sync(lead)
    assert log.outcome == SyncLog.Outcome.CREATED
    assert lead.dynamics_entity == "lead"


def test_lead_created_when_no_contact_either(org):
    org.configure(update_existing_contacts=True)
    lead = org.capture(last_name="Nobody", email=unique_email("nobody"))
    log = org.sync(lead)
    assert log.outcome == SyncLog.Outcome.CREATED
    assert lead.dynamics_entity == "lead"


def test_primary_contacts_creates_contact(org):
    org.configure(primary_object="contact")
    company = f"Contact Corp {unique_digits(6)}"
    email = unique_email("new-contact")
    phone = f"+1 212 555 {unique_digits(4)}"
    lead = org.capture(first_name="Cara", last_name="Contact", email=email,
                       company=company, phone=phone)

    log = org.sync(lead)

    record = org.record("contact", lead.dynamics_record_id)
    account = org.records("account", name=company)[0]
    assert log.outcome == SyncLog.Outcome.CREATED
    assert lead.dynamics_entity == "contact"
    assert record["firstname"] == "Cara"
    assert record["emailaddress1"] == email
    assert record["telephone1"] == phone
    assert record["_parentcustomerid_value"] == account["accountid"]
    assert org.records("lead", emailaddress1=email) == []


def test_primary_contacts_updates_contact(org):
    org.configure(primary_object="contact")
    email = unique_email("old-contact")
    contact = org.seed("contact", lastname="Existing", emailaddress1=email)
    lead = org.capture(last_name="Existing", email=email, job_title="CFO")
    log = org.sync(lead)
    assert log.outcome == SyncLog.Outcome.UPDATED
    assert org.record("contact", contact)["jobtitle"] == "CFO"


def test_resync_updates_same_record(org):
    lead = org.capture(last_name="Again", email=unique_email("again"), company="")
    org.sync(lead)
    first_id = lead.dynamics_record_id
    Lead.objects.filter(pk=lead.pk).update(email=unique_email("changed"), job_title="Moved")
    lead.refresh_from_db()
    log = org.sync(lead)
    assert lead.dynamics_record_id == first_id
    assert "synced from this lead before" in joined(log)
    assert org.record("lead", first_id)["jobtitle"] == "Moved"


# -- Field mappings ----------------------------------------------------------------------

def set_mode(org, entity, column, mode):
    FieldMapping.objects.filter(integration=org.setup.integration, entity=entity,
                                column=column).update(mode=mode)


@pytest.mark.parametrize("mode, stored, captured, expected", [
    ("overwrite", "Engineer", "Director", "Director"),
    ("overwrite", "Engineer", "", "Engineer"),
    ("complete", "Engineer", "Director", "Engineer"),
    ("complete", None, "Director", "Director"),
    ("append", "Engineer", "Director", "Engineer; Director"),
    ("append", "Engineer; Director", "director", "Engineer; Director"),
    ("append", None, "Director", "Director"),
])
def test_mapping_modes(org, mode, stored, captured, expected):
    set_mode(org, "lead", "jobtitle", mode)
    email = unique_email("mode")
    values = {"lastname": "Mode", "emailaddress1": email}
    if stored is not None:
        values["jobtitle"] = stored
    existing = org.seed("lead", **values)
    lead = org.capture(last_name="Mode", email=email, job_title=captured)

    org.sync(lead)

    assert org.record("lead", existing).get("jobtitle") == expected


def test_append_to_memo_uses_new_line(org):
    FieldMapping.objects.create(integration=org.setup.integration, entity="lead",
                                column="description", source="notes", mode="append")
    email = unique_email("memo")
    existing = org.seed("lead", lastname="Memo", emailaddress1=email,
                        description="Met in Berlin")
    lead = org.capture(last_name="Memo", email=email, notes="Met again in Paris")
    org.sync(lead)
    assert org.record("lead", existing)["description"] == "Met in Berlin\nMet again in Paris"


def test_fixed_lead_source(org):
    FieldMapping.objects.create(integration=org.setup.integration, entity="lead",
                                column="leadsourcecode", fixed_value="7")
    lead = org.capture(last_name="Source", email=unique_email("source"))
    org.sync(lead)
    assert org.record("lead", lead.dynamics_record_id)["leadsourcecode"] == 7


def test_overlong_values_trimmed_and_logged(org):
    long_first = "Maximiliana" * 6
    lead = org.capture(first_name=long_first, last_name="Long",
                       email=unique_email("long"))

    log = org.sync(lead)

    fields = {entry["column"]: entry for entry in log.details["fields"]}
    assert log.outcome == SyncLog.Outcome.CREATED
    assert org.record("lead", lead.dynamics_record_id)["firstname"] == long_first[:50]
    assert fields["firstname"]["trimmed_from_length"] == len(long_first)


def test_missing_last_name_fallback(org):
    lead = org.capture(first_name="Cher", email=unique_email("cher"))
    log = org.sync(lead)
    assert org.record("lead", lead.dynamics_record_id)["lastname"] == "Unknown"
    assert "no last name" in joined(log)


def test_bad_column_skipped_not_fatal(org):
    # Saved before the column was removed from the org, so validation never saw it.
    FieldMapping.objects.create(integration=org.setup.integration, entity="lead",
                                column="new_removedcolumn", source="notes")
    lead = org.capture(last_name="Partial", email=unique_email("partial"), notes="Hello")

    log = org.sync(lead)

    assert log.outcome == SyncLog.Outcome.CREATED
    assert org.record("lead", lead.dynamics_record_id)["lastname"] == "Partial"
    assert log.details["skipped_fields"][0]["column"] == "new_removedcolumn"


def test_field_changes_logged_with_old_values(org):
    email = unique_email("logged")
    org.seed("lead", lastname="Logged", emailaddress1=email, jobtitle="Before")
    lead = org.capture(last_name="Logged", email=email, job_title="After")
    log = org.sync(lead)
    fields = {entry["column"]: entry for entry in log.details["fields"]}
    assert fields["jobtitle"]["old"] == "Before"
    assert fields["jobtitle"]["new"] == "After"
    assert "lastname" not in fields


# -- Owner -------------------------------------------------------------------------------

def test_owner_is_members_dynamics_user(org):
    member = get_user_model().objects.create_user(username="sam", email=SANDBOX_SALES)
    make_member(org.setup.team, member)
    lead = org.capture(member=member, last_name="Owned", email=unique_email("owned"))
    org.sync(lead)
    owner = org.record("lead", lead.dynamics_record_id)["_ownerid_value"]
    assert owner == org.sandbox.store.user_by_email(SANDBOX_SALES)["systemuserid"]


def test_owner_falls_back_to_integration_user(org):
    lead = org.capture(last_name="Fallback", email=unique_email("fallback"))
    log = org.sync(lead)
    owner = org.record("lead", lead.dynamics_record_id)["_ownerid_value"]
    assert owner == org.sandbox.store.user_by_email(SANDBOX_ADMIN)["systemuserid"]
    assert "integration user" in log.details["owner"]["reason"]


def test_owner_team_from_mapping(org):
    FieldMapping.objects.filter(integration=org.setup.integration, entity="lead",
                                column="ownerid").update(
        source="", fixed_value=f"team:{EVENT_SALES_TEAM_ID}")
    lead = org.capture(last_name="Team Owned", email=unique_email("team-owned"))

    log = org.sync(lead)

    record = org.record("lead", lead.dynamics_record_id)
    assert record["_ownerid_value"] == EVENT_SALES_TEAM_ID
    assert log.details["owner"]["type"] == "team"


def test_owner_reassigned_in_overwrite_mode(org):
    email = unique_email("reassigned")
    existing = org.seed("lead", lastname="Reassigned", emailaddress1=email)
    FieldMapping.objects.filter(integration=org.setup.integration, entity="lead",
                                column="ownerid").update(
        source="", fixed_value=f"team:{EVENT_SALES_TEAM_ID}", mode="overwrite")
    lead = org.capture(last_name="Reassigned", email=email)
    org.sync(lead)
    assert org.record("lead", existing)["_ownerid_value"] == EVENT_SALES_TEAM_ID


def test_owner_kept_on_update(org):
    email = unique_email("kept-owner")
    existing = org.seed("lead", lastname="Kept", emailaddress1=email)
    before = org.record("lead", existing)["_ownerid_value"]
    member = get_user_model().objects.create_user(username="sam", email=SANDBOX_SALES)
    make_member(org.setup.team, member)
    lead = org.capture(member=member, last_name="Kept", email=email)
    org.sync(lead)
    assert org.record("lead", existing)["_ownerid_value"] == before


# -- Accounts ----------------------------------------------------------------------------

def test_account_found_by_company(org):
    company = f"Northwind {unique_digits(6)}"
    account = org.seed("account", name=company.upper())
    lead = org.capture(last_name="Company", email=unique_email("company"), company=company)
    log = org.sync(lead)
    assert org.record("lead", lead.dynamics_record_id)["_parentaccountid_value"] == account
    assert log.details["account"]["matched_by"] == "company"
    assert len(org.records("account", name=company)) == 1


def test_account_found_by_email_domain(org):
    domain = f"fabrikam{unique_digits(6)}.example"
    account = org.seed("account", name="Fabrikam Inc", websiteurl=f"https://www.{domain}/")
    lead = org.capture(last_name="Domain", email=f"pat@{domain}")
    log = org.sync(lead)
    assert org.record("lead", lead.dynamics_record_id)["_parentaccountid_value"] == account
    assert log.details["account"]["matched_by"] == "email domain"


@pytest.mark.parametrize("stored, captured", [
    ("https://www.{host}/", "{host}"),
    ("{host}", "HTTP://WWW.{host}"),
    ("http://{host}/about/", "https://{host}/about"),
])
def test_account_found_by_website(org, stored, captured):
    org.configure(search_accounts_by_website=True)
    host = f"contoso{unique_digits(6)}.example"
    account = org.seed("account", name="Contoso Website",
                       websiteurl=stored.format(host=host))
    lead = org.capture(last_name="Web", email=unique_email("web"),
                       website=captured.format(host=host), company="Another Name")
    log = org.sync(lead)
    assert org.record("lead", lead.dynamics_record_id)["_parentaccountid_value"] == account
    assert log.details["account"]["matched_by"] == "website"


def test_website_search_off_by_default(org):
    host = f"offsite{unique_digits(6)}.example"
    org.seed("account", name="Offsite", websiteurl=f"https://{host}")
    company = f"Offsite New {unique_digits(6)}"
    lead = org.capture(last_name="Web", email=unique_email("web"), website=host,
                       company=company)
    log = org.sync(lead)
    assert log.details["account"]["action"] == "create"


def test_free_mail_domain_never_links(org):
    gmail_accounts = len(org.records("account", name="gmail.com"))
    lead = org.capture(last_name="Free", email=f"free.{unique_digits(8)}@gmail.com")
    log = org.sync(lead)
    assert org.record("lead", lead.dynamics_record_id).get("_parentaccountid_value") is None
    assert "account" not in log.details
    assert len(org.records("account", name="gmail.com")) == gmail_accounts


def test_account_created_from_domain(org):
    domain = f"tailspin{unique_digits(6)}.example"
    lead = org.capture(last_name="Domain", email=f"kim@{domain}")
    org.sync(lead)
    accounts = org.records("account", name=domain)
    assert len(accounts) == 1
    assert org.record("lead", lead.dynamics_record_id)["_parentaccountid_value"] == \
        accounts[0]["accountid"]


def test_same_company_shares_one_account(org):
    company = f"Shared Co {unique_digits(6)}"
    first = org.capture(last_name="One", email=unique_email("one"), company=company)
    second = org.capture(last_name="Two", email=unique_email("two"), company=company)
    org.sync(first)
    org.sync(second)
    accounts = org.records("account", name=company)
    assert len(accounts) == 1


def test_existing_account_link_kept(org):
    email = unique_email("linked")
    original = org.seed("account", name=f"Original {unique_digits(6)}")
    existing = org.seed("lead", lastname="Linked", emailaddress1=email,
                        **{"parentaccountid@odata.bind": f"/accounts({original})"})
    lead = org.capture(last_name="Linked", email=email,
                       company=f"Different {unique_digits(6)}")
    org.sync(lead)
    assert org.record("lead", existing)["_parentaccountid_value"] == original


# -- Notes -------------------------------------------------------------------------------

def notes_of(org, record_id):
    return [row for row in org.sandbox.store.records("annotation")
            if row.get("_objectid_value") == record_id]


def test_notes_become_one_note(org):
    lead = org.capture(last_name="Noted", email=unique_email("noted"),
                       notes="Wants a demo in March.")
    org.sync(lead)
    notes = notes_of(org, lead.dynamics_record_id)
    assert len(notes) == 1
    assert notes[0]["notetext"] == "Wants a demo in March."
    assert notes[0]["subject"].startswith("Notes from ")


def test_resync_never_duplicates_note(org):
    lead = org.capture(last_name="Twice", email=unique_email("twice"), notes="First")
    org.sync(lead)
    org.sync(lead)
    Lead.objects.filter(pk=lead.pk).update(notes="First, then more")
    lead.refresh_from_db()
    log = org.sync(lead)
    notes = notes_of(org, lead.dynamics_record_id)
    assert len(notes) == 1
    assert notes[0]["notetext"] == "First, then more"
    assert log.details["note"]["action"] == "update"


def test_notes_off_writes_no_note(org):
    org.configure(sync_notes=False)
    lead = org.capture(last_name="Quiet", email=unique_email("quiet"), notes="Secret")
    org.sync(lead)
    assert notes_of(org, lead.dynamics_record_id) == []


def test_note_on_contact(org):
    org.configure(primary_object="contact")
    lead = org.capture(last_name="Contact Note", email=unique_email("cnote"),
                       notes="Call back")
    org.sync(lead)
    notes = notes_of(org, lead.dynamics_record_id)
    assert len(notes) == 1


# -- Preview -----------------------------------------------------------------------------

def test_preview_writes_nothing(org):
    email = unique_email("preview")
    existing = org.seed("lead", lastname="Preview", emailaddress1=email, jobtitle="Old")
    lead = org.capture(last_name="Preview", email=email, job_title="New",
                       company=f"Preview Co {unique_digits(6)}", notes="Hello")

    preview = services.preview_sync(lead.pk)

    fields = {entry["column"]: entry for entry in preview["plan"]["fields"]}
    assert preview["plan"]["action"] == "update"
    assert preview["plan"]["record_id"] == existing
    assert fields["jobtitle"] == {"column": "jobtitle", "old": "Old", "new": "New",
                                  "mode": "overwrite"}
    assert preview["plan"]["account"]["action"] == "create"
    assert org.record("lead", existing)["jobtitle"] == "Old"
    assert notes_of(org, existing) == []
    assert SyncLog.objects.filter(lead=lead).count() == 0


def test_preview_page_shows_plan(org, client):
    email = unique_email("preview-page")
    org.seed("lead", lastname="Page", emailaddress1=email, jobtitle="Old")
    lead = org.capture(last_name="Page", email=email, job_title="New")
    client.force_login(org.setup.admin)

    page = client.get(f"/integrations/leads/{lead.pk}/preview/")

    text = page.content.decode()
    assert page.status_code == 200
    assert "Nothing was written to Dynamics" in text
    assert "matches by email" in text
    assert "jobtitle" in text


def test_preview_page_other_team_404(org, client):
    from teams.tests.factories import make_admin, make_team

    lead = org.capture(last_name="Hidden", email=unique_email("hidden"))
    client.force_login(make_admin(make_team()))
    assert client.get(f"/integrations/leads/{lead.pk}/preview/").status_code == 404


def test_admin_rejects_unknown_column(org, client):
    integration = org.setup.integration
    client.force_login(org.setup.admin)
    url = f"/admin/integrations/integration/{integration.pk}/change/"
    page = client.get(url)
    assert page.status_code == 200
    form = page.context["adminform"].form
    inline = page.context["inline_admin_formsets"][0].formset
    data = {key: value for key, value in form.initial.items() if value is not None}
    data.update({
        "team": integration.team_id, "org_url": integration.org_url,
        "primary_object": "lead", "auto_sync": "on", "sync_notes": "on",
        f"{inline.prefix}-TOTAL_FORMS": str(len(inline.forms)),
        f"{inline.prefix}-INITIAL_FORMS": str(inline.initial_form_count()),
    })
    for index, mapping_form in enumerate(inline.forms[: inline.initial_form_count()]):
        for name in ("id", "entity", "column", "source", "fixed_value", "mode", "position"):
            value = mapping_form.initial.get(name)
            data[f"{inline.prefix}-{index}-{name}"] = "" if value is None else value
        data[f"{inline.prefix}-{index}-integration"] = integration.pk
    new = inline.initial_form_count()
    data.update({f"{inline.prefix}-{new}-entity": "lead",
                 f"{inline.prefix}-{new}-column": "jobtitel",
                 f"{inline.prefix}-{new}-source": "job_title",
                 f"{inline.prefix}-{new}-mode": "overwrite",
                 f"{inline.prefix}-{new}-position": "99"})

    response = client.post(url, data)

    assert response.status_code == 200
    assert "no column &#x27;jobtitel&#x27;" in response.content.decode()
    assert not FieldMapping.objects.filter(integration=integration, column="jobtitel").exists()


def test_single_lead_uses_two_requests(org):
    """Reads go in one $batch and the account, lead and note in one change set."""
    lead = org.capture(first_name="Few", last_name="Requests", email=unique_email("few"),
                       company=f"Few Requests {unique_digits(6)}", notes="Keep it cheap")
    org.sandbox.store.clear_request_log()

    log = org.sync(lead)

    counts = org.sandbox.store.request_counts()
    assert log.outcome == SyncLog.Outcome.CREATED
    assert log.request_count == 2
    assert counts["http_requests"] == 2
    assert log.details["account"]["action"] == "create"
    assert log.details["note"]["action"] == "create"


# -- Bad data that must not stop a sync ----------------------------------------------

def test_unparseable_account_website_ignored(org):
    company = f"Bracket Co {unique_digits(6)}"
    org.seed("account", name=company, websiteurl="http://[bracket.example")
    lead = org.capture(last_name="Bracket", email=unique_email("bracket"), company=company)
    log = org.sync(lead)
    assert log.outcome == SyncLog.Outcome.CREATED
    assert log.details["account"]["matched_by"] == "company"


def test_renamed_account_still_linked(org):
    company = f"Renamed Co {unique_digits(6)}"
    first = org.capture(last_name="First", email=unique_email("first"), company=company)
    org.sync(first)
    account_id = org.record("lead", first.dynamics_record_id)["_parentaccountid_value"]
    org.client.update("accounts", account_id, {"name": "Renamed in Dynamics"})
    second = org.capture(last_name="Second", email=unique_email("second"), company=company)

    log = org.sync(second)

    assert log.outcome == SyncLog.Outcome.CREATED
    assert org.record("lead", second.dynamics_record_id)["_parentaccountid_value"] == account_id


def test_website_only_lead_creates_no_nameless_account(org):
    org.configure(search_accounts_by_website=True)
    nameless = len(org.records("account", name=""))
    lead = org.capture(last_name="Web Only", email=f"w.{unique_digits(8)}@gmail.com",
                       website=f"https://nomatch{unique_digits(6)}.example")
    log = org.sync(lead)
    assert log.outcome == SyncLog.Outcome.CREATED
    assert "account" not in log.details
    assert len(org.records("account", name="")) == nameless


def test_picklist_text_skipped_not_fatal(org):
    FieldMapping.objects.create(integration=org.setup.integration, entity="lead",
                                column="leadsourcecode", fixed_value="Trade Show")
    lead = org.capture(last_name="Picklist", email=unique_email("picklist"))

    log = org.sync(lead)

    assert log.outcome == SyncLog.Outcome.CREATED
    assert lead.sync_status == Lead.SyncStatus.SYNCED
    assert log.details["skipped_fields"][0]["column"] == "leadsourcecode"
    assert "not a number" in lead.last_sync_error


def test_picklist_out_of_range_skipped(org):
    FieldMapping.objects.create(integration=org.setup.integration, entity="lead",
                                column="leadsourcecode", fixed_value="99999")
    lead = org.capture(last_name="Range", email=unique_email("range"))
    log = org.sync(lead)
    assert log.outcome == SyncLog.Outcome.CREATED
    assert log.details["skipped_fields"][0]["column"] == "leadsourcecode"


def test_emoji_name_cut_by_utf16_units(org):
    last_name = "Family" + "👩‍👩‍👧‍👦" * 6
    lead = org.capture(last_name=last_name, email=unique_email("emoji"))
    log = org.sync(lead)
    stored = org.record("lead", lead.dynamics_record_id)["lastname"]
    assert log.outcome == SyncLog.Outcome.CREATED
    assert stored.startswith("Family")
    assert len(stored.encode("utf-16-le")) // 2 <= 50
    assert "skipped_fields" not in log.details


def test_overlong_email_left_out_not_cut(org):
    email = "a" * 95 + f"{unique_digits(4)}@example.org"
    lead = org.capture(last_name="Long Email", email=email)
    log = org.sync(lead)
    record = org.record("lead", lead.dynamics_record_id)
    assert log.outcome == SyncLog.Outcome.CREATED
    assert record.get("emailaddress1") is None
    assert log.details["skipped_fields"][0]["column"] == "emailaddress1"
    assert "never shortened" in lead.last_sync_error


def test_huge_notes_cut_to_note_limit(org):
    lead = org.capture(last_name="Verbose", email=unique_email("verbose"),
                       notes="x" * 100_050)
    log = org.sync(lead)
    notes = [row for row in org.sandbox.store.records("annotation")
             if row.get("_objectid_value") == lead.dynamics_record_id]
    assert log.outcome == SyncLog.Outcome.CREATED
    assert len(notes[0]["notetext"]) == 100_000
    assert "notes cut from 100050" in joined(log)


def test_qualified_lead_keeps_its_note(org):
    org.configure(update_existing_contacts=True)
    email = unique_email("keep-note")
    lead = org.capture(last_name="Keeper", email=email, notes="First meeting")
    org.sync(lead)
    qualified = lead.dynamics_record_id
    org.client.update("leads", qualified, {"statecode": 1, "statuscode": 3})
    contact = org.seed("contact", lastname="Keeper", emailaddress1=email)

    org.sync(lead)

    on_lead = [row for row in org.sandbox.store.records("annotation")
               if row.get("_objectid_value") == qualified]
    on_contact = [row for row in org.sandbox.store.records("annotation")
                  if row.get("_objectid_value") == contact]
    assert lead.dynamics_record_id == contact
    assert len(on_lead) == 1
    assert len(on_contact) == 1


def test_bulk_unexpected_error_not_left_queued(org, monkeypatch):
    from integrations.sync import bulk

    leads = [org.capture(last_name=f"Stuck {index}", email=unique_email("stuck"))
             for index in range(3)]

    def explode(*args, **kwargs):
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(bulk, "sync_many", explode)
    services.sync_leads_now([lead.pk for lead in leads])

    statuses = set(Lead.objects.filter(pk__in=[lead.pk for lead in leads])
                   .values_list("sync_status", flat=True))
    assert statuses == {Lead.SyncStatus.SYNCED}


def test_mobile_phone_used_for_matching(org):
    digits = unique_digits(4)
    existing = org.seed("lead", lastname="Mobile Only", mobilephone=f"+1 415 555 {digits}")
    lead = org.capture(last_name="Mobile Only", mobile_phone=f"(415) 555-{digits}")
    log = org.sync(lead)
    assert lead.dynamics_record_id == existing
    assert org.record("lead", existing)["mobilephone"] == f"(415) 555-{digits}"
    assert "matches by phone" in joined(log)
