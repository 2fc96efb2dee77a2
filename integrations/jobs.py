"""Manual syncs: start a SyncJob for the leads a user may sync, and report its progress.

Every manual entry point (the lead API, My leads, the admin action, the sync log's retry
buttons) calls `start_sync` or `start_sync_by_ids`, so the same rules in
permissions.SyncPermissions apply everywhere.
"""

import logging
from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone

from leads.models import Lead

from . import services
from .models import SyncJob, SyncLog
from .permissions import LEAD_NOT_FOUND, SyncPermissions

logger = logging.getLogger(__name__)

# Outcomes that end an attempt. A RETRYING row only records that another attempt follows.
FINAL_OUTCOMES = (SyncLog.Outcome.CREATED, SyncLog.Outcome.UPDATED, SyncLog.Outcome.SKIPPED,
                  SyncLog.Outcome.FAILED)


@dataclass
class SyncStart:
    """The result of a manual sync request."""

    # One job per integration; nearly always one, but an admin may select leads that
    # different integrations sync (a subteam's own and the full team's).
    jobs: list[SyncJob] = field(default_factory=list)
    queued: list[int] = field(default_factory=list)
    # Lead id -> the reason the lead was not queued.
    refused: dict[int, str] = field(default_factory=dict)

    @property
    def job(self):
        """Return the only job, or None when no lead or several integrations were queued."""
        return self.jobs[0] if len(self.jobs) == 1 else None


def start_sync(user, leads) -> SyncStart:
    """Queue a sync of each lead that `user` may sync, and refuse the others with a reason.

    Creates one SyncJob per integration for the queued leads, in one transaction with
    marking them queued; the tasks are enqueued when it commits. A lead that is already
    queued is queued again. If a worker is syncing it right now, that sync queues one
    more when it ends, so the lead's latest data reaches Dynamics.
    """
    permissions = SyncPermissions(user)
    result = SyncStart()
    by_integration = {}
    for lead in _unique(leads):
        decision = permissions.check(lead)
        if not decision.allowed:
            result.refused[lead.pk] = decision.reason
            continue
        integration = permissions.integration_for(lead)
        by_integration.setdefault(integration.pk, (integration, []))[1].append(lead.pk)

    with transaction.atomic():
        for integration, lead_ids in by_integration.values():
            result.jobs.append(SyncJob.objects.create(
                integration=integration, requested_by=user, lead_ids=lead_ids))
            result.queued.extend(lead_ids)
        services.enqueue_syncs(result.queued)

    logger.info("User %s started sync jobs %s: %d leads queued, %d refused",
                user.pk, [job.pk for job in result.jobs], len(result.queued),
                len(result.refused))
    return result


def start_sync_by_ids(user, lead_ids) -> SyncStart:
    """Like start_sync for lead ids; an id outside the user's teams is refused as not found.

    A lead that does not exist and a lead of another team get the same reason, so lead
    ids cannot be probed.
    """
    lead_ids = list(dict.fromkeys(lead_ids))
    leads = {lead.pk: lead for lead in Lead.objects.filter(pk__in=lead_ids)}
    permissions = SyncPermissions(user)
    visible = [leads[lead_id] for lead_id in lead_ids
               if lead_id in leads and permissions.can_see(leads[lead_id])]
    result = start_sync(user, visible)
    visible_ids = {lead.pk for lead in visible}
    for lead_id in lead_ids:
        if lead_id not in visible_ids:
            result.refused[lead_id] = LEAD_NOT_FOUND
    return result


def _unique(leads):
    seen = set()
    for lead in leads:
        if lead.pk not in seen:
            seen.add(lead.pk)
            yield lead


def failed_leads_of(integration):
    """Return the failed leads that `integration` syncs, oldest first."""
    candidates = (Lead.objects.filter(team_id=integration.team_id,
                                      sync_status=Lead.SyncStatus.FAILED)
                  .order_by("captured_at", "pk"))
    return services.leads_synced_by(integration, candidates)


def retry_failed(user, integration) -> SyncStart:
    """Queue every failed lead of `integration` that `user` may sync."""
    return start_sync(user, failed_leads_of(integration))


def sync_log_entries(integration, outcome=""):
    """Return the integration's sync log, newest first, optionally of one outcome."""
    entries = SyncLog.objects.filter(integration=integration).select_related("lead")
    if outcome:
        entries = entries.filter(outcome=outcome)
    return entries


# -- Progress ---------------------------------------------------------------------------

@dataclass
class LeadResult:
    """The end of one lead of a job: an outcome and, unless it synced, the reason."""

    lead_id: int
    name: str
    outcome: str
    reason: str = ""


@dataclass
class JobProgress:
    """Counts of a job's leads by outcome; `waiting` counts the leads still queued."""

    total: int = 0
    created: int = 0
    updated: int = 0
    skipped: int = 0
    failed: int = 0
    waiting: int = 0
    # Failed and skipped leads with their reasons, for the summary.
    problems: list[LeadResult] = field(default_factory=list)

    @property
    def done(self):
        return self.total - self.waiting

    @property
    def finished(self):
        return self.waiting == 0

    def as_dict(self):
        return {
            "total": self.total, "done": self.done, "created": self.created,
            "updated": self.updated, "skipped": self.skipped, "failed": self.failed,
            "waiting": self.waiting, "finished": self.finished,
        }


def job_progress(job) -> JobProgress:
    """Count the job's leads by outcome, and mark the job done once none is queued.

    A lead still queued is waiting. Any other lead counts by its latest final SyncLog
    written since the job started. A lead without one (it went back to pending because
    the integration was disconnected, or it was deleted) counts as failed, with the
    lead's last sync error as the reason.

    A lead whose task was lost (with a killed worker, say) stays queued until the sweep
    queues it again, so its job stays running until then.
    """
    leads = {lead.pk: lead for lead in Lead.objects.filter(pk__in=job.lead_ids)}
    latest_logs = {}
    logs = (SyncLog.objects.filter(lead_id__in=job.lead_ids, created_at__gte=job.created_at,
                                   outcome__in=FINAL_OUTCOMES)
            .order_by("lead_id", "-created_at", "-id"))
    for log in logs:
        latest_logs.setdefault(log.lead_id, log)

    progress = JobProgress(total=len(job.lead_ids))
    for lead_id in job.lead_ids:
        lead = leads.get(lead_id)
        if lead is not None and lead.sync_status == Lead.SyncStatus.QUEUED:
            progress.waiting += 1
            continue
        result = _lead_result(lead_id, lead, latest_logs.get(lead_id))
        setattr(progress, result.outcome, getattr(progress, result.outcome) + 1)
        if result.outcome in (SyncLog.Outcome.FAILED, SyncLog.Outcome.SKIPPED):
            progress.problems.append(result)

    if progress.finished and job.status == SyncJob.Status.RUNNING:
        _mark_done(job)
    return progress


def _lead_result(lead_id, lead, log):
    if lead is None:
        return LeadResult(lead_id, f"Lead {lead_id}", SyncLog.Outcome.FAILED,
                          "The lead was deleted, so whether it reached Dynamics is not known; "
                          "search Dynamics for the person.")
    if log is None:
        return LeadResult(lead_id, str(lead), SyncLog.Outcome.FAILED,
                          lead.last_sync_error or "The lead did not sync.")
    reason = ""
    if log.outcome in (SyncLog.Outcome.FAILED, SyncLog.Outcome.SKIPPED):
        reason = lead.last_sync_error or log.message
    return LeadResult(lead_id, str(lead), log.outcome, reason)


def _mark_done(job):
    now = timezone.now()
    # The status filter makes this safe when two progress requests finish the job at once.
    SyncJob.objects.filter(pk=job.pk, status=SyncJob.Status.RUNNING).update(
        status=SyncJob.Status.DONE, finished_at=now)
    job.status = SyncJob.Status.DONE
    job.finished_at = job.finished_at or now
    logger.info("Sync job %s is done", job.pk)
