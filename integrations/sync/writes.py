"""Writing a SyncPlan to Dynamics as one atomic change set.

The account, the record and the note of one lead go in one $batch change set, so a
failure leaves nothing half-written. When Dataverse rejects one column, the change set
is sent again without it, so a bad field fails only itself (a rejection that names no
column still fails the lead).
"""

import logging

from ..client import ChangeSet, Operation, errors, error_from_result
from . import matching
from .engine import (
    ACCOUNT_LINKS,
    NOTE_LINKS,
    OWNER_SETS,
    RecordExists,
    SyncResult,
)

logger = logging.getLogger(__name__)


def _owner_bind(plan):
    kind, owner_id, _ = plan.owner
    return f"/{OWNER_SETS[kind]}({owner_id})"


def write_operations(plan):
    """Return [(role, Operation)] for the plan's writes, in the order they must run.

    Roles are "account", "record" and "note". Records get ids chosen here, so later
    operations bind to them by id without Content-ID references.
    """
    operations = []
    account = plan.account
    if account is not None and account.action == "create":
        body = {change.column: change.new for change in account.changes}
        body["accountid"] = account.account_id
        if plan.owner:
            body["ownerid@odata.bind"] = _owner_bind(plan)
        operations.append(("account", Operation("POST", "accounts", body)))
    elif account is not None and account.action == "update":
        body = {change.column: change.new for change in account.changes}
        operations.append(("account", Operation(
            "PATCH", f"accounts({account.account_id})", body, headers={"If-Match": "*"})))

    entity_set = matching.ENTITY_SETS[plan.entity]
    body = {change.column: change.new for change in plan.changes}
    if plan.owner:
        body["ownerid@odata.bind"] = _owner_bind(plan)
    if account is not None and account.link:
        body[f"{ACCOUNT_LINKS[plan.entity]}@odata.bind"] = f"/accounts({account.account_id})"
    if plan.action == "create":
        body[matching.PRIMARY_KEYS[plan.entity]] = plan.record_id
        operations.append(("record", Operation("POST", entity_set, body)))
    elif body:
        operations.append(("record", Operation(
            "PATCH", f"{entity_set}({plan.record_id})", body, headers={"If-Match": "*"})))

    note = plan.note
    if note is not None and note["action"] != "keep":
        # PATCH without If-Match creates the note or replaces it, so a re-sync never adds
        # a second note for the same lead.
        operations.append(("note", Operation("PATCH", f"annotations({note['id']})", {
            "subject": note["subject"],
            "notetext": note["notetext"],
            f"{NOTE_LINKS[plan.entity]}@odata.bind": f"/{entity_set}({plan.record_id})",
        })))
    return operations


def describe_writes(plan, operations):
    """Add the writes that succeeded to the plan's path."""
    roles = {role for role, _ in operations}
    account = plan.account
    if account is not None:
        if "account" in roles:
            verb = "created" if account.action == "create" else "updated"
            plan.path.append(f"account {account.account_id} '{account.name}' {verb}")
        else:
            plan.path.append(f"account {account.account_id} matches by "
                             f"{account.matched_by}")
    if "record" in roles:
        verb = "created" if plan.action == "create" else "updated"
        plan.path.append(f"{plan.entity} {plan.record_id} {verb}")
    else:
        plan.path.append("nothing to change")
    if "note" in roles:
        plan.path.append(f"note {plan.note['id']} {plan.note['action']}d")


def failure_of(plan, operations, result, skipped_fields):
    """Handle a failed change set: return True to send it again, or raise.

    A create that finds its id taken raises RecordExists. A column that Dataverse
    rejects is removed from its operation and recorded in `skipped_fields`.
    """
    error = error_from_result(result)
    index = _failed_index(result, operations)
    role, operation = operations[index] if index is not None else (None, None)
    if isinstance(error, errors.PreconditionFailed) and operation is not None \
            and operation.method == "POST":
        if role == "record":
            raise RecordExists(plan.entity, plan.record_id) from error
        raise RecordExists("account", plan.account.account_id) from error
    if isinstance(error, errors.ValidationFailed):
        column = errors.column_in_message(error.message)
        for _, candidate in ([(role, operation)] if operation else operations):
            for key in (column, f"{column}@odata.bind"):
                if column and candidate.body and key in candidate.body:
                    skipped_fields.append({"column": key, "value": candidate.body.pop(key),
                                           "error": error.message})
                    logger.warning("Dynamics rejected column %s (%s); writing without it",
                                   key, error.code)
                    return True
    raise error


def _failed_index(result, operations, offset=0):
    """Return the index of the failed operation from its Content-ID, or None."""
    try:
        index = int(result.content_id) - 1 - offset
    except (TypeError, ValueError):
        return None
    return index if 0 <= index < len(operations) else None


def apply(plan, client):
    """Write `plan` to Dynamics in one change set and return the SyncResult."""
    if plan.action == "skip":
        return SyncResult("skipped", plan.entity, plan.record_id, plan.path, plan.as_log(),
                          message=plan.skip_reason)
    operations = write_operations(plan)
    skipped_fields = []
    while operations:
        results = client.batch([ChangeSet(operation for _, operation in operations)])
        if all(result.ok for result in results):
            break
        failure_of(plan, operations, results[0], skipped_fields)
    return finish(plan, operations, skipped_fields)


def finish(plan, operations, skipped_fields):
    """Return the SyncResult of a plan whose writes succeeded."""
    describe_writes(plan, operations)
    outcome = "created" if plan.action == "create" else "updated"
    details = plan.as_log()
    skipped = plan.skipped_fields + skipped_fields
    if skipped:
        details["skipped_fields"] = skipped
    return SyncResult(outcome, plan.entity, plan.record_id, plan.path, details)
