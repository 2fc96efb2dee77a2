"""Sync services: choosing the integration for a lead, scheduling its sync, and running
and recording lead syncs. Views, admin actions and tasks call these; connecting an
integration is in connecting.py."""

import contextlib
import logging
import threading
import time

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from leads.models import Lead

from . import claims, connection, field_mappings, metadata
from .client import errors
from .models import Integration, SyncLog
from .sync import bulk, engine, reads, writes

logger = logging.getLogger(__name__)

SYNC_TASK = "integrations.tasks.sync_lead"
# The reason a lead of an integration that is not connected waits, by Integration.status.
# {scope} is "this team" or the subteam whose integration it is.
CONNECTION_PROBLEMS = {
    Integration.Status.DISCONNECTED: "Dynamics is not connected for {scope}.",
    Integration.Status.REAUTHORIZATION_NEEDED: (
        "The Dynamics connection of {scope} must be authorized again: its sign-in or its "
        "application user's secret expired or was revoked."),
}
BULK_SYNC_TASK = "integrations.tasks.sync_leads"
# Leads per bulk task: a task's reads and writes then fit in a few $batch requests and
# finish well within the task timeout.
BULK_TASK_SIZE = 200
# Syncs of one lead before a transient failure (Dynamics down or throttling) marks it
# failed; until then it is retried later with a growing delay.
MAX_SYNC_ATTEMPTS = 6
# Delay before the first scheduled retry, in seconds; it doubles with each attempt, up
# to RETRY_DELAY_MAX.
RETRY_DELAY = 30
RETRY_DELAY_MAX = 1800


def connection_problem(integration):
    """Return why `integration`, which is not connected, cannot sync."""
    scope = (f"the subteam {integration.subteam.name}" if integration.subteam_id
             else "this team")
    return CONNECTION_PROBLEMS[integration.status].format(scope=scope)


# -- Which integration syncs a lead -----------------------------------------------------

def integration_for_lead(lead):
    """Return the integration that syncs `lead`, or None.

    A subteam's own integration wins over the full-team one. A member of several subteams
    with integrations is synced by the subteam that was created first (lowest id).
    """
    subteam_integration = (
        Integration.objects.filter(
            team_id=lead.team_id,
            subteam__memberships__user_id=lead.captured_by_id,
        )
        .order_by("subteam_id")
        .first()
    )
    if subteam_integration is not None:
        return subteam_integration
    return Integration.objects.filter(team_id=lead.team_id, subteam__isnull=True).first()


# -- Scheduling -------------------------------------------------------------------------

# Lead ids collected by `syncs_in_bulk` in this thread, or None outside such a block.
_bulk_collector = threading.local()


@contextlib.contextmanager
def syncs_in_bulk():
    """Queue the syncs of the leads captured inside the block as bulk tasks.

    An import captures leads one by one, and each capture would queue a task of its own.
    Inside this block they are collected instead, and queued together in bulk tasks of
    BULK_TASK_SIZE leads when the block ends.
    """
    outer = getattr(_bulk_collector, "lead_ids", None)
    _bulk_collector.lead_ids = [] if outer is None else outer
    try:
        yield
    finally:
        if outer is None:
            # Also after an error: the leads captured before it are saved and must sync.
            collected, _bulk_collector.lead_ids = _bulk_collector.lead_ids, None
            if collected:
                enqueue_syncs(collected)


def schedule_sync_for_new_lead(lead):
    """Queue a sync of a just-captured lead if its integration has Auto Sync on.

    Call inside the transaction that created the lead: the task is enqueued on commit,
    so a rolled-back capture never reaches Dynamics. Otherwise the lead stays pending
    with a message that gives the reason.
    """
    integration = integration_for_lead(lead)
    if integration is None:
        _mark_pending(lead, "No Dynamics integration is set up for this team yet; the lead "
                            "will sync when an admin connects one.")
        return False
    if not integration.is_connected:
        _mark_pending(lead, f"Waiting: {connection_problem(integration)} The lead "
                            f"syncs after an admin connects Dynamics on the Sync Settings "
                            f"page.")
        return False
    if not integration.auto_sync:
        _mark_pending(lead, "Auto Sync is off; the lead waits for a manual sync.")
        return False
    collected = getattr(_bulk_collector, "lead_ids", None)
    if collected is not None:
        collected.append(lead.pk)
    else:
        enqueue_syncs([lead.pk])
    # The caller returns this instance (the API's 201 body), so it shows the new status.
    lead.sync_status = Lead.SyncStatus.QUEUED
    lead.last_sync_error = ""
    return True


def _mark_pending(lead, message):
    Lead.objects.filter(pk=lead.pk).update(
        sync_status=Lead.SyncStatus.PENDING, last_sync_error=message, sync_attempts=0,
        **claims.RELEASED,
    )
    lead.sync_status = Lead.SyncStatus.PENDING
    lead.last_sync_error = message
    logger.info("Lead %s left pending: %s", lead.pk, message)


def enqueue_syncs(lead_ids):
    """Mark the leads queued and enqueue their sync once the transaction commits.

    One lead gets its own task. More go in bulk tasks of up to BULK_TASK_SIZE leads,
    which read and write through a few $batch requests.
    """
    lead_ids = list(lead_ids)
    if not lead_ids:
        return
    Lead.objects.filter(pk__in=lead_ids).update(
        sync_status=Lead.SyncStatus.QUEUED, last_sync_error="", sync_queued_at=timezone.now()
    )

    def enqueue():
        # Imported here so the web process loads django-q2 only when it enqueues.
        from django_q.tasks import async_task

        try:
            if len(lead_ids) == 1:
                async_task(SYNC_TASK, lead_ids[0], task_name=f"sync-lead-{lead_ids[0]}",
                           group="sync")
            else:
                for start in range(0, len(lead_ids), BULK_TASK_SIZE):
                    chunk = lead_ids[start:start + BULK_TASK_SIZE]
                    async_task(BULK_SYNC_TASK, chunk, task_name=f"sync-leads-{chunk[0]}",
                               group="sync")
        except Exception:  # The broker's own errors: Redis down, the database locked.
            # The capture is already committed; failing now would only hide that. The
            # leads stay queued, and the sweep queues them again.
            logger.exception("Could not enqueue the sync of %d leads %s; they stay queued "
                             "until the sweep queues them again", len(lead_ids),
                             lead_ids[:20])
            return
        logger.info("Enqueued the sync of %d leads: %s", len(lead_ids), lead_ids[:20])

    transaction.on_commit(enqueue)


def leads_synced_by(integration, leads):
    """Return the leads among `leads` (of the integration's team) that `integration` syncs.

    The integration depends only on the capturing member, so each member's is looked up
    once.
    """
    by_member = {}
    chosen = []
    for lead in leads:
        if lead.captured_by_id not in by_member:
            by_member[lead.captured_by_id] = integration_for_lead(lead)
        member_integration = by_member[lead.captured_by_id]
        if member_integration is not None and member_integration.pk == integration.pk:
            chosen.append(lead)
    return chosen


def enqueue_waiting_leads(integration):
    """Queue every pending lead that `integration` syncs; return how many were queued."""
    candidates = Lead.objects.filter(
        team_id=integration.team_id, sync_status=Lead.SyncStatus.PENDING
    )
    lead_ids = [lead.pk for lead in leads_synced_by(integration, candidates)]
    enqueue_syncs(lead_ids)
    return len(lead_ids)


# -- Running a sync ---------------------------------------------------------------------

def sync_settings_for(integration, lead):
    """Return the engine's SyncSettings for syncing `lead` through `integration`."""
    return engine.SyncSettings(
        primary_object=integration.primary_object,
        update_existing_contacts=integration.update_existing_contacts,
        sync_notes=integration.sync_notes,
        search_accounts_by_website=integration.search_accounts_by_website,
        rules=field_mappings.rules_for(integration),
        metadata=integration.dynamics_metadata,
        phone_region=lead.team.default_phone_region,
        integration_user_id=integration.dynamics_user_id,
        record_id_namespace=integration.record_id_namespace,
    )


def _load_lead(lead_id):
    return Lead.objects.select_related("captured_by", "team").filter(pk=lead_id).first()


def _ensure_metadata(integration, client):
    if not integration.dynamics_metadata:
        metadata.refresh_metadata(integration, client)


def sync_lead_now(lead_id):
    """Sync one lead now and record the outcome on the lead and in the sync log.

    Safe to run twice: a second run finds the record the first one wrote and updates it.
    Returns the SyncLog row, or None when the lead no longer exists or has no connected
    integration (it then stays pending with the reason).
    """
    lead = _load_lead(lead_id)
    if lead is None:
        logger.warning("Sync skipped: lead %s no longer exists", lead_id)
        return None
    integration = integration_for_lead(lead)
    if integration is None or not integration.is_connected:
        # Disconnected since the task was queued: the lead waits, with the reason.
        schedule_sync_for_new_lead(lead)
        return None

    Lead.objects.filter(pk=lead.pk).update(sync_attempts=F("sync_attempts") + 1)
    client = connection.client_for(integration)
    started = time.monotonic()
    try:
        _ensure_metadata(integration, client)
        sync_settings = sync_settings_for(integration, lead)
        result = _gather_decide_apply(lead, sync_settings, client)
    except errors.AuthorizationRequired as error:
        return _record_reauthorization_needed(lead, integration, error)
    except (errors.TransientError, errors.Throttled) as error:
        if lead.sync_attempts + 1 < MAX_SYNC_ATTEMPTS:
            return _retry_later([lead], integration, error, SYNC_TASK, lead.pk)
        return _record_failure(lead, integration, error, client, started)
    except errors.DataverseError as error:
        return _record_failure(lead, integration, error, client, started)
    except Exception:
        # A bug must not leave the lead queued forever: mark it failed, then let the task
        # fail too, so django-q2 keeps the traceback.
        logger.exception("Lead %s: unexpected error during sync via integration %s",
                         lead.pk, integration.pk)
        _write_final_state(
            lead,
            sync_status=Lead.SyncStatus.FAILED,
            sync_attempts=0,
            last_sync_error="The sync stopped on an unexpected error; the worker log has "
                            "the details. Sync the lead again once it is fixed.",
        )
        raise
    duration_ms = int((time.monotonic() - started) * 1000)
    return _record_success(lead, integration, result, client.request_count, duration_ms)


def _write_final_state(lead, **fields):
    """Store how a sync of `lead` ended, and end its claim in the same update.

    `lead` is the row as the sync loaded it. When the lead was queued again during the
    sync (edited, then synced again), the sync may have sent older data, and the new
    request's task skipped the claimed lead. The lead then keeps the record this sync
    found or wrote but stays queued, and a new sync is queued for the newer data.
    Returns False when the lead was deleted during the sync, True otherwise.
    """
    finished = Lead.objects.filter(pk=lead.pk, sync_queued_at=lead.sync_queued_at).update(
        **fields, **claims.RELEASED)
    if finished:
        return True
    fields.pop("sync_status")
    fields.pop("last_sync_error")
    if not Lead.objects.filter(pk=lead.pk).update(**fields, **claims.RELEASED):
        logger.warning("Lead %s was deleted during its sync; the sync is not logged",
                       lead.pk)
        return False
    logger.info("Lead %s was queued again during its sync; syncing it again", lead.pk)
    enqueue_syncs([lead.pk])
    return True


def _record_success(lead, integration, result, request_count, duration_ms):
    """Store a finished sync on the lead and in the sync log; return the SyncLog."""
    note = ""
    if result.outcome == SyncLog.Outcome.SKIPPED:
        status, message = Lead.SyncStatus.SKIPPED, result.message
        note = result.message
    else:
        status = Lead.SyncStatus.SYNCED
        message = f"{result.outcome.capitalize()} Dynamics {result.entity}."
        skipped = result.details.get("skipped_fields", [])
        if skipped:
            # The lead landed without some columns, so the lead names them too.
            columns = ", ".join(entry["column"] for entry in skipped)
            note = (f"Synced without {columns}: "
                    + "; ".join(f"{entry['column']}: {entry['error']}" for entry in skipped)
                    + " Check the field mappings on the Sync Settings page.")
            message = f"{message} {note}"
    logger.info(
        "Lead %s %s Dynamics %s %s via integration %s in %d requests, %d ms",
        lead.pk, result.outcome, result.entity, result.record_id, integration.pk,
        request_count, duration_ms,
    )
    if not _write_final_state(
        lead,
        sync_status=status,
        sync_attempts=0,
        dynamics_entity=result.entity,
        dynamics_record_id=result.record_id,
        last_sync_error=note,
        last_synced_at=timezone.now(),
    ):
        return None
    return SyncLog.objects.create(
        integration=integration, lead=lead, outcome=result.outcome,
        dynamics_entity=result.entity, dynamics_record_id=result.record_id,
        message=message, path=result.path, details=result.details,
        request_count=request_count, duration_ms=duration_ms,
    )


def sync_leads_now(lead_ids):
    """Sync many leads in bulk: few $batch requests for all reads and all writes.

    Leads are grouped by integration. A lead that the bulk round cannot finish (a failed
    change set, a second lead of the same person) is synced on its own afterwards.
    Returns {lead id: SyncLog or None}.
    """
    # Oldest first, so the first capture of a person creates the record.
    leads = list(Lead.objects.select_related("captured_by", "team")
                 .filter(pk__in=lead_ids).order_by("captured_at", "pk"))
    by_integration = {}
    logs = {}
    # The integration depends only on the team and the capturing member.
    integration_cache = {}
    for lead in leads:
        member_key = (lead.team_id, lead.captured_by_id)
        if member_key not in integration_cache:
            integration_cache[member_key] = integration_for_lead(lead)
        integration = integration_cache[member_key]
        if integration is None or not integration.is_connected:
            schedule_sync_for_new_lead(lead)
            logs[lead.pk] = None
            continue
        by_integration.setdefault(integration.pk, (integration, []))[1].append(lead)

    for integration, group in by_integration.values():
        logs.update(_sync_group(integration, group))
    return logs


def _sync_group(integration, leads):
    Lead.objects.filter(pk__in=[lead.pk for lead in leads]).update(
        sync_attempts=F("sync_attempts") + 1)
    client = connection.client_for(integration)
    started = time.monotonic()
    try:
        _ensure_metadata(integration, client)
        outcome = bulk.sync_many(
            [(lead, sync_settings_for(integration, lead)) for lead in leads], client)
    except errors.AuthorizationRequired as error:
        return {lead.pk: _record_reauthorization_needed(lead, integration, error)
                for lead in leads}
    except (errors.TransientError, errors.Throttled) as error:
        # Syncing one by one would only send more requests to a busy org: retry later.
        retried = [lead for lead in leads if lead.sync_attempts + 1 < MAX_SYNC_ATTEMPTS]
        given_up = [lead for lead in leads if lead not in retried]
        logs = {}
        if retried:
            log = _retry_later(retried, integration, error, BULK_SYNC_TASK,
                               [lead.pk for lead in retried])
            logs.update({lead.pk: log for lead in retried})
        for lead in given_up:
            logs[lead.pk] = _record_failure(lead, integration, error, client, started)
        return logs
    except errors.DataverseError as error:
        logger.warning("Bulk sync via integration %s failed (%s); syncing %d leads one "
                       "by one", integration.pk, error, len(leads))
        return {lead.pk: sync_lead_now(lead.pk) for lead in leads}
    except Exception:
        # A bug must not leave the group queued forever: sync each lead on its own,
        # where an unexpected error fails only that lead.
        logger.exception("Bulk sync via integration %s stopped on an unexpected error; "
                         "syncing %d leads one by one", integration.pk, len(leads))
        return {lead.pk: _sync_alone_or_fail(lead) for lead in leads}

    duration_ms = int((time.monotonic() - started) * 1000)
    requests_used = client.request_count
    logs = {}
    with transaction.atomic():
        # One commit for the whole group instead of two per lead.
        logs.update(_record_group(integration, leads, outcome, requests_used, duration_ms,
                                  client, started))
    for lead in outcome.retry_alone:
        logs[lead.pk] = _sync_alone_or_fail(lead)
    return logs


def _sync_alone_or_fail(lead):
    """Run the one-lead sync; an unexpected error is already recorded on the lead."""
    try:
        return sync_lead_now(lead.pk)
    except Exception:
        return None


def _record_group(integration, leads, outcome, requests_used, duration_ms, client, started):
    logs = {}
    for lead in leads:
        if lead.pk in outcome.results:
            result = outcome.results[lead.pk]
            result.details["bulk"] = {"leads": len(leads), "requests": requests_used}
            # A bulk sync shares its requests among its leads; the log keeps the total
            # under details["bulk"] and counts none for the lead itself.
            logs[lead.pk] = _record_success(lead, integration, result, 0, duration_ms)
        elif lead.pk in outcome.errors:
            logs[lead.pk] = _record_failure(lead, integration, outcome.errors[lead.pk],
                                            client, started)
    return logs


# Syncs of one lead in a row that may find a record to create already there. Parallel
# syncs of one person at a new company can take the account, then the lead, in turn.
MAX_SYNC_ROUNDS = 4


def _gather_decide_apply(lead, sync_settings, client):
    """Run one sync; when a record to create already exists, sync again, as an update of
    that record (or with that account found).

    Raises errors.TransientError when records keep appearing for MAX_SYNC_ROUNDS rounds,
    so the lead is retried later rather than failed.
    """
    existing = []
    for _ in range(MAX_SYNC_ROUNDS):
        plan = engine.decide(lead, sync_settings, reads.gather(lead, sync_settings, client))
        if existing:
            _follow_existing_records(plan, existing)
        try:
            return writes.apply(plan, client)
        except engine.RecordExists as exists:
            logger.info("Lead %s: %s; syncing again", lead.pk, exists)
            existing.append(exists)
            if exists.entity in ("lead", "contact"):
                lead.dynamics_entity = exists.entity
                lead.dynamics_record_id = exists.record_id
    raise errors.TransientError(
        f"Other syncs created records of this person {MAX_SYNC_ROUNDS} times while this "
        "one ran; it runs again later.")


def _follow_existing_records(plan, existing):
    """Note in the plan the records that other syncs created, and link a taken account."""
    for exists in reversed(existing):
        plan.path.insert(0, f"{exists.entity} {exists.record_id} already exists, created "
                            "by another sync")
    account = plan.account
    taken_account_ids = {exists.record_id for exists in existing
                         if exists.entity == "account"}
    if (account is not None and account.action == "create"
            and account.account_id in taken_account_ids):
        # The account with this derived id exists but does not match the lead (it was
        # renamed in Dynamics, say): link it rather than fail on every attempt.
        account.action = "keep"
        account.matched_by = "the id this product gave it when it created it"
        account.changes = []


def preview_sync(lead_id):
    """Return what a sync of the lead would do, without writing to Dynamics.

    The result is a dict: "path" (the decisions) and "plan" (record, fields with old and
    new values, owner, account, note). Raises a client error when Dynamics cannot be
    read, and LookupError when the lead has no connected integration.
    """
    lead = _load_lead(lead_id)
    if lead is None:
        raise LookupError(f"Lead {lead_id} does not exist.")
    integration = integration_for_lead(lead)
    if integration is None or not integration.is_connected:
        raise LookupError(f"Lead {lead_id} has no connected Dynamics integration.")
    client = connection.client_for(integration)
    _ensure_metadata(integration, client)
    sync_settings = sync_settings_for(integration, lead)
    plan = engine.decide(lead, sync_settings, reads.gather(lead, sync_settings, client))
    return {"path": plan.path, "plan": plan.as_log(), "requests": client.request_count}


def readable_error(error):
    """Return a sentence for the lead's last sync error that names the next step."""
    if isinstance(error, errors.PermissionDenied):
        return ("The Dynamics integration user lacks a privilege, so Dynamics rejected the "
                "write. Add the privilege to the user's security role, then sync the lead "
                f"again. Dynamics said: {error.message}")
    if isinstance(error, errors.ValidationFailed):
        return ("Dynamics rejected the lead's data; check the field mappings, then sync "
                f"the lead again. Dynamics said: {error.message}")
    if isinstance(error, (errors.TransientError, errors.Throttled)):
        source = "Dynamics said" if error.status else "Details"
        return ("Dynamics was unreachable or busy after several retries; sync the lead "
                f"again later. {source}: {error.message}")
    return f"The sync failed; sync the lead again after fixing the cause. {error}"


def _record_failure(lead, integration, error, client, started):
    message = readable_error(error)
    logger.error(
        "Lead %s failed to sync via integration %s: %s, status %s, code %s",
        lead.pk, integration.pk, error.__class__.__name__, error.status or "none",
        error.code or "none",
    )
    if not _write_final_state(lead, sync_status=Lead.SyncStatus.FAILED,
                              last_sync_error=message, sync_attempts=0):
        return None
    return SyncLog.objects.create(
        integration=integration, lead=lead, outcome=SyncLog.Outcome.FAILED, message=message,
        details={"error": error.__class__.__name__, "status": error.status,
                 "code": error.code},
        request_count=client.request_count,
        duration_ms=int((time.monotonic() - started) * 1000),
    )


def retry_delay(attempts, error):
    """Return the seconds to wait before the next sync attempt: at least Retry-After,
    doubling from RETRY_DELAY with each attempt, at most RETRY_DELAY_MAX."""
    delay = min(RETRY_DELAY_MAX, RETRY_DELAY * 2 ** max(0, attempts - 1))
    return max(delay, getattr(error, "retry_after", 0) or 0)


def _retry_later(leads, integration, error, task, task_argument):
    """Keep the leads queued and schedule `task` again after a transient failure.

    Returns the SyncLog of the last lead (one row per lead is written).
    """
    from django_q.models import Schedule
    from django_q.tasks import schedule

    attempts = max(lead.sync_attempts + 1 for lead in leads)
    delay = retry_delay(attempts, error)
    next_run = timezone.now() + timezone.timedelta(seconds=delay)
    message = (f"Dynamics was unavailable or busy: {error.message} The sync runs again at "
               f"{next_run:%H:%M:%S} UTC, attempt {attempts + 1} of {MAX_SYNC_ATTEMPTS}.")
    lead_ids = [lead.pk for lead in leads]
    with transaction.atomic():
        Lead.objects.filter(pk__in=lead_ids).update(
            sync_status=Lead.SyncStatus.QUEUED, last_sync_error=message,
            sync_queued_at=next_run)
        schedule(task, task_argument, schedule_type=Schedule.ONCE, next_run=next_run)
        log = None
        for lead in leads:
            log = SyncLog.objects.create(
                integration=integration, lead=lead, outcome=SyncLog.Outcome.RETRYING,
                message=message, details={"error": error.__class__.__name__,
                                          "status": error.status, "retry_in_s": delay},
            )
    logger.warning("Integration %s: %d lead(s) retry in %d s after %s: %s", integration.pk,
                   len(lead_ids), delay, error.__class__.__name__, lead_ids[:20])
    return log


def _record_reauthorization_needed(lead, integration, error):
    """Keep the lead pending and flag the integration: only an admin can fix sign-in."""
    Integration.objects.filter(pk=integration.pk).update(
        status=Integration.Status.REAUTHORIZATION_NEEDED, last_error=str(error)
    )
    message = ("Waiting: the Dynamics sign-in expired or was revoked. An admin must "
               "reconnect on the Sync Settings page; the lead syncs after that.")
    _mark_pending(lead, message)
    logger.error(
        "Integration %s needs re-authorization (lead %s waits): %s",
        integration.pk, lead.pk, error,
    )
    return SyncLog.objects.create(
        integration=integration, lead=lead, outcome=SyncLog.Outcome.RETRYING, message=message,
        details={"error": error.__class__.__name__},
    )
