"""The sync decision tree for one lead, separate from HTTP details and tasks.

A sync has three steps: `reads.gather` reads what Dynamics has (matching records, the
account, the owner, the note), `decide` here turns that into a SyncPlan without any I/O,
and `writes.apply` writes the plan. A preview runs the first two steps only.

Primary object Leads:
1. A Dynamics lead matches (the one synced before, else by email or phone): update it.
   A qualified lead is left alone. With "Update existing contacts" on, its contact (or
   a contact with the same email or phone) is updated instead; else nothing changes.
2. No lead, and "Update existing contacts" on, and a contact matches: update the contact.
3. Otherwise create a lead.
Primary object Contacts: a matching contact is updated, otherwise a contact is created.

Created and updated records are linked to an account (see accounts.py) when they have
none, the owner is set on create, and the lead's notes become one Dynamics note.
"""

import uuid
from dataclasses import dataclass, field

from . import accounts, mappings, matching
from .normalize import lead_phone, normalize_email

# Navigation property that links each table to an account.
ACCOUNT_LINKS = {"lead": "parentaccountid", "contact": "parentcustomerid_account"}
ACCOUNT_LINK_VALUES = {"lead": "_parentaccountid_value", "contact": "_parentcustomerid_value"}
NOTE_LINKS = {"lead": "objectid_lead", "contact": "objectid_contact"}
OWNER_SETS = {"user": "systemusers", "team": "teams"}
NOTE_SUBJECT_MAX = 500
# The maximum length of an annotation's notetext, in UTF-16 code units.
NOTE_TEXT_MAX = 100_000


@dataclass
class SyncSettings:
    """The integration settings and mappings that a sync reads."""

    primary_object: str
    update_existing_contacts: bool
    sync_notes: bool
    search_accounts_by_website: bool
    rules: tuple
    metadata: dict
    phone_region: str
    integration_user_id: str
    record_id_namespace: uuid.UUID

    def rules_for(self, entity):
        return [rule for rule in self.rules if rule.entity == entity]

    def mapped_columns(self, entity):
        """Return the mapped columns to read, leaving out any the org does not have: a
        $select naming a missing column would fail the whole query."""
        known = self.columns(entity)
        return {rule.column for rule in self.rules_for(entity)
                if rule.column != mappings.OWNER_COLUMN and (not known or rule.column in known)}

    def columns(self, entity):
        return self.metadata.get(entity, {})

    def record_id(self, kind, key):
        """Return the id for a record this integration creates, derived from `key`.

        Derived ids make a retried create safe: if an earlier attempt created the record
        but its response was lost, Dynamics rejects the second create with 412 instead
        of storing a duplicate, and the engine updates the existing record.
        """
        return str(uuid.uuid5(self.record_id_namespace, f"{kind}:{key}"))


@dataclass
class Gathered:
    """The Dynamics records that concern one lead, read before any decision."""

    previous: dict | None = None
    leads: list = field(default_factory=list)
    contacts: list = field(default_factory=list)
    accounts: list = field(default_factory=list)
    owner_user_id: str | None = None
    note: dict | None = None


@dataclass
class AccountPlan:
    action: str  # "create", "link", "update" or "keep"
    account_id: str
    matched_by: str = ""
    name: str = ""
    changes: list = field(default_factory=list)
    others: list = field(default_factory=list)
    link: bool = False

    def as_log(self):
        entry = {"action": self.action, "id": self.account_id, "linked": self.link}
        if self.matched_by:
            entry["matched_by"] = self.matched_by
        if self.changes:
            entry["fields"] = [change.as_log() for change in self.changes]
        if self.others:
            entry["other_matches"] = self.others
        return entry


@dataclass
class SyncPlan:
    """The planned sync of one lead: the path, the record, each field, account and note."""

    entity: str
    action: str  # "create", "update" or "skip"
    record_id: str
    path: list = field(default_factory=list)
    changes: list = field(default_factory=list)
    owner: tuple | None = None  # (kind, id, reason); kind is "user" or "team"
    account: AccountPlan | None = None
    note: dict | None = None
    other_matches: list = field(default_factory=list)
    skip_reason: str = ""
    # Columns left out before writing, with the reason: {"column", "value", "error"}.
    skipped_fields: list = field(default_factory=list)

    def as_log(self):
        details = {
            "entity": self.entity,
            "action": self.action,
            "record_id": self.record_id,
            "fields": [change.as_log() for change in self.changes],
        }
        if self.owner:
            details["owner"] = {"type": self.owner[0], "id": self.owner[1],
                                "reason": self.owner[2]}
        if self.account:
            details["account"] = self.account.as_log()
        if self.note:
            details["note"] = {"id": self.note["id"], "action": self.note["action"]}
        if self.other_matches:
            details["other_matches"] = self.other_matches
        if self.skip_reason:
            details["skip_reason"] = self.skip_reason
        if self.skipped_fields:
            details["skipped_fields"] = list(self.skipped_fields)
        return details


@dataclass
class SyncResult:
    """The outcome of one lead's sync."""

    outcome: str  # "created", "updated" or "skipped"
    entity: str
    record_id: str
    path: list
    details: dict
    message: str = ""


# -- Identity ---------------------------------------------------------------------------

def note_id(settings, lead, record_id):
    """Return the id of the lead's note on one Dynamics record.

    One note per lead and record: a re-sync to the same record replaces the note, and a
    sync to another record (a qualified lead's contact) leaves the first note in place.
    """
    return settings.record_id("note", f"{lead.pk}:{record_id}")


# -- Deciding ---------------------------------------------------------------------------

def decide(lead, settings, found):
    """Return the SyncPlan for `lead` from what `gather` found. No I/O."""
    email = normalize_email(lead.email)
    e164 = lead_phone(lead, settings.phone_region)
    path = []
    if lead.phone.strip() and not e164:
        path.append(f"phone {lead.phone.strip()!r} cannot be read as a number of region "
                    f"{settings.phone_region} (the team's default), so it is not used for "
                    "matching")

    contact_match = matching.choose_match("contact", found.contacts, email, e164,
                                          settings.phone_region)
    if settings.primary_object == "contact":
        target, others = _previous_or(found, "contact", contact_match, path)
        if target is None:
            path.append("no contact matches: create a contact")
            return _plan_create(lead, settings, found, "contact", path)
        return _plan_update(lead, settings, found, "contact", target, others, path)

    lead_match = matching.choose_match("lead", found.leads, email, e164,
                                       settings.phone_region)
    target, others = _previous_or(found, "lead", lead_match, path)
    if target is not None and target.get("statecode") == 1:
        return _plan_for_qualified_lead(lead, settings, found, target, others,
                                        contact_match, path)
    if target is not None:
        return _plan_update(lead, settings, found, "lead", target, others, path)

    if settings.update_existing_contacts:
        contact, others = _previous_or(found, "contact", contact_match, path)
        if contact is not None:
            path.append("no lead matches, and existing contacts are updated")
            return _plan_update(lead, settings, found, "contact", contact, others, path)
    path.append("no lead matches: create a lead")
    return _plan_create(lead, settings, found, "lead", path)


def _plan_for_qualified_lead(lead, settings, found, target, others, contact_match, path):
    """Leave a qualified lead alone; update its contact when the settings allow."""
    path.append(f"lead {target['id']} is qualified, so it is left unchanged")
    if not settings.update_existing_contacts:
        reason = (f"Dynamics lead {target['id']} is qualified, so it was left unchanged. "
                  "Turn on 'Update existing contacts' to update its contact instead.")
        return SyncPlan("lead", "skip", target["id"], path=path, skip_reason=reason,
                        other_matches=others)
    # The contact created when the lead was qualified, if it matches, else the best match.
    contact = (contact_match.find(target.get("_parentcontactid_value"))
               or contact_match.chosen)
    if contact is None:
        reason = (f"Dynamics lead {target['id']} is qualified and no contact matches its "
                  "email or phone, so nothing was changed.")
        return SyncPlan("lead", "skip", target["id"], path=path, skip_reason=reason,
                        other_matches=others)
    path.append(f"its contact {contact.record_id} is updated instead")
    others = [record_id for record_id in [m.record_id for m in contact_match.matches]
              if record_id != contact.record_id]
    return _plan_update(lead, settings, found, "contact", contact.row, others, path)


def _previous_or(found, entity, match_result, path):
    """Return (row, other ids): the record synced before if it is of `entity`, else the
    best match."""
    previous = found.previous
    if previous is not None and previous["entity"] == entity:
        key = matching.PRIMARY_KEYS[entity]
        path.append(f"{entity} {previous[key]} was synced from this lead before")
        return dict(previous, id=previous[key]), []
    if match_result.chosen is None:
        return None, []
    chosen = match_result.chosen
    path.append(f"{entity} {chosen.record_id} matches by {chosen.matched_by}")
    if match_result.others:
        path.append(f"{len(match_result.others)} other {entity}s match too; the "
                    "open or active, most recently modified one was chosen")
    return chosen.row, match_result.others


class RecordExists(Exception):
    """A create found its record id taken: an earlier attempt whose response was lost, or
    a parallel sync of the same person, created the record first. Sync again with
    `record_id` as the lead's previous record, so the update follows the mapping modes."""

    def __init__(self, entity, record_id):
        super().__init__(f"{entity} {record_id} already exists")
        self.entity = entity
        self.record_id = record_id


def identity_key(lead, settings):
    """Return the key a new record's id is derived from: the person, not the lead.

    Two leads of the same person (same email, else same phone) synced at the same time by
    two workers both find nothing and both create. With ids derived from the email or
    phone, the second create fails with 412 instead of storing a duplicate.
    """
    email = normalize_email(lead.email)
    if email:
        return f"email:{email}"
    e164 = lead_phone(lead, settings.phone_region)
    if e164:
        return f"phone:{e164}"
    return f"lead:{lead.pk}"


def _plan_create(lead, settings, found, entity, path):
    record_id = settings.record_id(entity, identity_key(lead, settings))
    skipped = []
    changes = mappings.column_changes(lead, settings.rules_for(entity), {},
                                      settings.columns(entity), skipped)
    if not any(change.column == "lastname" for change in changes):
        changes.append(mappings.FieldChange("lastname", None, mappings.LAST_NAME_FALLBACK,
                                            "fallback"))
        path.append(f"no last name: '{mappings.LAST_NAME_FALLBACK}' is used")
    plan = SyncPlan(entity, "create", record_id, path=path, changes=changes,
                    skipped_fields=skipped)
    plan.owner = _owner(lead, settings, found, entity)
    plan.account = _plan_account(lead, settings, found, entity, current_link=None)
    plan.note = _plan_note(lead, settings, found, entity, record_id, plan)
    return plan


def _plan_update(lead, settings, found, entity, row, others, path):
    key = matching.PRIMARY_KEYS[entity]
    record_id = row.get(key) or row["id"]
    skipped = []
    changes = mappings.column_changes(lead, settings.rules_for(entity), row,
                                      settings.columns(entity), skipped)
    plan = SyncPlan(entity, "update", record_id, path=path, changes=changes,
                    other_matches=others, skipped_fields=skipped)
    owner_rule = _owner_rule(settings, entity)
    if owner_rule is not None and owner_rule.mode == mappings.OVERWRITE:
        owner = _owner(lead, settings, found, entity)
        if owner and owner[1] != row.get("_ownerid_value"):
            plan.owner = owner
    plan.account = _plan_account(lead, settings, found, entity,
                                 current_link=row.get(ACCOUNT_LINK_VALUES[entity]))
    plan.note = _plan_note(lead, settings, found, entity, record_id, plan)
    if changes:
        path.append(f"update {entity} {record_id}: {len(changes)} column(s) change")
    else:
        path.append(f"{entity} {record_id} already has the lead's values")
    return plan


def _owner_rule(settings, entity):
    return next((rule for rule in settings.rules_for(entity)
                 if rule.column == mappings.OWNER_COLUMN), None)


def _owner(lead, settings, found, entity):
    """Return (kind, id, reason) for the owner that the mappings ask for, or None."""
    rule = _owner_rule(settings, entity)
    if rule is None:
        return None
    if rule.source == mappings.OWNER_SOURCE:
        if found.owner_user_id:
            return ("user", found.owner_user_id,
                    f"the Dynamics user with the email of {lead.captured_by.email}")
        if settings.integration_user_id:
            return ("user", settings.integration_user_id,
                    "the integration user, since no Dynamics user has the capturing "
                    "member's email")
        return None
    kind, _, owner_id = rule.fixed_value.partition(":")
    if kind in OWNER_SETS and owner_id:
        return (kind, owner_id.strip(), "the owner chosen in the field mappings")
    return None


def _plan_account(lead, settings, found, entity, current_link):
    """Return the AccountPlan, or None when the lead names no usable account."""
    keys = accounts.AccountKeys.for_lead(lead, settings.search_accounts_by_website)
    if not keys:
        return None
    rules = settings.rules_for("account")
    row, criterion, others = accounts.choose_account(keys, found.accounts)
    if row is None:
        name = keys.new_account_name()
        if not name:
            # Only a website, which matched no account: nothing to name a new one after.
            return None
        account_id = settings.record_id("account", name.lower())
        changes = mappings.column_changes(lead, rules, {}, settings.columns("account"))
        changes = [change for change in changes if change.column != "name"]
        changes.insert(0, mappings.FieldChange("name", None, name, "create"))
        return AccountPlan("create", account_id, name=name, changes=changes,
                           link=current_link is None)
    changes = mappings.column_changes(lead, rules, row, settings.columns("account"))
    action = "update" if changes else "keep"
    link = not current_link
    return AccountPlan(action, row["accountid"], matched_by=criterion, name=row.get("name"),
                       changes=changes, others=others, link=link)


def _plan_note(lead, settings, found, entity, record_id, plan):
    text = lead.notes.strip()
    if not settings.sync_notes or not text:
        return None
    if mappings.text_length(text) > NOTE_TEXT_MAX:
        plan.path.append(f"notes cut from {mappings.text_length(text)} to {NOTE_TEXT_MAX} "
                         "characters, the maximum of a Dynamics note")
        text = mappings.cut_text(text, NOTE_TEXT_MAX)
    own_id = note_id(settings, lead, record_id)
    existing = found.note if found.note and found.note.get("annotationid") == own_id else None
    if existing is not None and (existing.get("notetext") or "") == text:
        return {"id": own_id, "action": "keep"}
    subject = (f"Notes from {mappings.SOURCE_FIELDS['captured_by_name'][1](lead)} "
               f"on {lead.captured_at:%Y-%m-%d}")[:NOTE_SUBJECT_MAX]
    return {
        "id": own_id,
        "action": "update" if existing is not None else "create",
        "subject": subject,
        "notetext": text,
        "entity": entity,
        "record_id": record_id,
    }
