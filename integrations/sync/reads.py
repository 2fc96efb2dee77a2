"""Reading what Dynamics holds for leads, as $batch operations.

Every read a decision needs (the record synced before, matching leads and contacts,
accounts, the owner, the note) is one GET operation. One lead's reads go in one $batch
request; a bulk sync puts many leads' reads in a few batches and sends each distinct
query once.
"""

import logging

from ..client import Operation, errors, error_from_result
from ..client.batch import MAX_BATCH_OPERATIONS
from ..client.odata import literal
from . import accounts, mappings, matching
from .engine import Gathered, note_id
from .normalize import lead_phone, normalize_email

logger = logging.getLogger(__name__)

NOTE_SELECT = "annotationid,notetext,subject"


def read_operations(lead, settings):
    """Return {name: Operation} for every read that the decision about `lead` needs."""
    email = normalize_email(lead.email)
    e164 = lead_phone(lead, settings.phone_region)
    operations = {}

    if lead.dynamics_record_id and lead.dynamics_entity in ("lead", "contact"):
        entity = lead.dynamics_entity
        operations["previous"] = Operation(
            "GET", f"{matching.ENTITY_SETS[entity]}({lead.dynamics_record_id})",
            params={"$select": ",".join(
                matching.record_select(entity, settings.mapped_columns(entity)))},
        )

    entities = {settings.primary_object}
    if settings.primary_object == "lead" and settings.update_existing_contacts:
        entities.add("contact")
    for entity in sorted(entities):
        condition = matching.record_filter(entity, email, e164)
        if condition:
            operations[f"{entity}s"] = Operation("GET", matching.ENTITY_SETS[entity], params={
                "$select": ",".join(
                    matching.record_select(entity, settings.mapped_columns(entity))),
                "$filter": condition,
            })

    keys = accounts.AccountKeys.for_lead(lead, settings.search_accounts_by_website)
    if keys:
        select = sorted({*accounts.ACCOUNT_SELECT, *settings.mapped_columns("account")})
        operations["accounts"] = Operation("GET", "accounts", params={
            "$select": ",".join(select), "$filter": accounts.account_filter(keys),
        })

    if _needs_member_owner(settings) and lead.captured_by.email.strip():
        operations["owner"] = Operation("GET", "systemusers", params={
            "$select": "systemuserid",
            "$filter": (f"internalemailaddress eq {literal(lead.captured_by.email.strip())}"
                        " and isdisabled eq false"),
            "$top": 1,
        })

    # A lead never synced has no note in Dynamics yet, so only re-syncs read it. Should
    # the note exist after all (an attempt whose response was lost), writing it again
    # replaces it rather than adding a second one.
    if settings.sync_notes and lead.notes.strip() and lead.dynamics_record_id:
        note = note_id(settings, lead, lead.dynamics_record_id)
        operations["note"] = Operation("GET", f"annotations({note})",
                                       params={"$select": NOTE_SELECT})
    return operations


def _needs_member_owner(settings):
    return any(rule.column == mappings.OWNER_COLUMN and rule.source == mappings.OWNER_SOURCE
               for rule in settings.rules)


def gathered_from(lead, operations, results, client):
    """Return the Gathered view of one lead from its operations' results.

    A 404 for the previous record or the note means "not there"; any other failed read
    raises the client error. Query results spread over several pages are read to the end.
    """
    found = Gathered()
    for name, operation in operations.items():
        result = results[_key(operation)]
        if result.status == 404 and name in ("previous", "note"):
            if name == "previous":
                logger.info("Lead %s: the %s it was synced to (%s) no longer exists",
                            lead.pk, lead.dynamics_entity, lead.dynamics_record_id)
            continue
        if not result.ok:
            raise error_from_result(result)
        body = result.body or {}
        if name == "previous":
            found.previous = dict(body, entity=lead.dynamics_entity)
        elif name == "note":
            found.note = body
        else:
            rows = client.all_rows(body)
            if name == "owner":
                found.owner_user_id = rows[0]["systemuserid"] if rows else None
            else:
                setattr(found, name, rows)
    return found


def _key(operation):
    return (operation.method, operation.path, tuple(sorted(operation.params.items())))


def run_reads(client, operations):
    """Send distinct read operations in as few $batch requests as allowed; return
    {operation key: OperationResult}."""
    distinct = {}
    for operation in operations:
        distinct.setdefault(_key(operation), operation)
    keys = list(distinct)
    results = {}
    for start in range(0, len(keys), MAX_BATCH_OPERATIONS):
        chunk = keys[start:start + MAX_BATCH_OPERATIONS]
        for key, result in zip(chunk, client.batch([distinct[key] for key in chunk])):
            results[key] = result
    return results


def gather(lead, settings, client):
    """Read everything the decision about one lead needs, in one $batch request."""
    operations = read_operations(lead, settings)
    if not operations:
        return Gathered()
    return gathered_from(lead, operations, run_reads(client, operations.values()), client)


def gather_many(leads_with_settings, client):
    """Return {lead id: Gathered or client error} for many leads, reading in bulk."""
    planned = [(lead, read_operations(lead, settings))
               for lead, settings in leads_with_settings]
    results = run_reads(client, [operation for _, operations in planned
                                 for operation in operations.values()])
    gathered = {}
    for lead, operations in planned:
        try:
            gathered[lead.pk] = gathered_from(lead, operations, results, client)
        except errors.DataverseError as error:
            gathered[lead.pk] = error
    return gathered
