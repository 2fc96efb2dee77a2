"""Syncing many leads with few requests: a backlog, a manual sync of a selection.

All leads' reads go in a few $batch requests (each distinct query once), each lead's
writes become one change set, and the change sets go in a few batches that run every
part even when one lead fails. A lead whose change set fails is synced again on its own,
where the one-lead path handles a record created meanwhile or a rejected column.
"""

import logging
from dataclasses import dataclass, field

from ..client import ChangeSet, errors
from ..client.batch import MAX_BATCH_OPERATIONS
from . import engine, reads, writes

logger = logging.getLogger(__name__)


@dataclass
class BulkOutcome:
    """Per-lead results of a bulk sync, and the leads to sync one by one."""

    results: dict = field(default_factory=dict)  # lead id -> SyncResult
    errors: dict = field(default_factory=dict)  # lead id -> client error
    retry_alone: list = field(default_factory=list)  # leads for the one-lead path


def first_of_each_person(leads_with_settings):
    """Split leads into (one lead per person, the other leads of the same people).

    Two leads of one person in the same round would both plan to create the same record,
    so the later ones wait for the one-lead path, which then finds the record.
    """
    first, later = [], []
    seen = set()
    for lead, settings in leads_with_settings:
        key = engine.identity_key(lead, settings)
        (later if key in seen else first).append((lead, settings))
        seen.add(key)
    return first, later


def share_new_accounts(plans):
    """Create each new account once: later plans that create the same account only link
    it, and their change sets run after the one that creates it."""
    created = set()
    for plan in plans:
        account = plan.account
        if account is None or account.action != "create":
            continue
        if account.account_id in created:
            account.action = "keep"
            account.matched_by = "created by another lead of this sync"
            account.changes = []
        created.add(account.account_id)


def sync_many(leads_with_settings, client):
    """Sync many leads of one integration; return a BulkOutcome."""
    outcome = BulkOutcome()
    first, later = first_of_each_person(leads_with_settings)
    outcome.retry_alone += [lead for lead, _ in later]

    gathered = reads.gather_many(first, client)
    plans = []
    for lead, settings in first:
        found = gathered[lead.pk]
        if isinstance(found, errors.DataverseError):
            outcome.errors[lead.pk] = found
            continue
        try:
            plans.append((lead, engine.decide(lead, settings, found)))
        except Exception:
            # The one-lead path records an unexpected error on this lead alone.
            logger.exception("Bulk sync: deciding lead %s failed; syncing it alone", lead.pk)
            outcome.retry_alone.append(lead)
    share_new_accounts([plan for _, plan in plans])

    pending = []
    for lead, plan in plans:
        if plan.action == "skip":
            outcome.results[lead.pk] = writes.apply(plan, client)
            continue
        operations = writes.write_operations(plan)
        if not operations:
            outcome.results[lead.pk] = writes.finish(plan, operations, [])
            continue
        pending.append((lead, plan, operations))

    for chunk in _chunks(pending):
        results = client.batch([ChangeSet(operation for _, operation in operations)
                                for _, _, operations in chunk])
        position = 0
        for lead, plan, operations in chunk:
            own = results[position:position + len(operations)]
            position += len(operations)
            if own and all(result.ok for result in own):
                outcome.results[lead.pk] = writes.finish(plan, operations, [])
            else:
                outcome.retry_alone.append(lead)
    logger.info("Bulk sync of %d leads: %d done in bulk, %d left for one-by-one, "
                "%d failed reading", len(leads_with_settings), len(outcome.results),
                len(outcome.retry_alone), len(outcome.errors))
    return outcome


def _chunks(pending):
    """Yield runs of (lead, plan, operations) whose operations fit in one batch."""
    chunk, size = [], 0
    for item in pending:
        count = len(item[2])
        if chunk and size + count > MAX_BATCH_OPERATIONS:
            yield chunk
            chunk, size = [], 0
        chunk.append(item)
        size += count
    if chunk:
        yield chunk
