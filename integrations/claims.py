"""Work claiming: which task run syncs a lead now, and the sweep for lost tasks.

Many worker processes, on many machines, take sync tasks from one queue. A task claims its
queued leads before it syncs them. It skips the leads that another run has claimed or
that are no longer queued. So a lead is synced by one worker at a time, and a task that
runs twice does nothing the second time. A claim expires after SYNC_CLAIM_SECONDS, which outlives
the task timeout: only a killed worker leaves a claim to expire. Its leads stay queued,
and the sweep queues them again.
"""

import contextlib
import logging
import uuid

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from leads.models import Lead

logger = logging.getLogger(__name__)

SWEEP_TASK = "integrations.tasks.sweep_stale_syncs"
SWEEP_SCHEDULE_NAME = "Queue stale lead syncs again"


def _unclaimed(now):
    return Q(sync_claimed_until__isnull=True) | Q(sync_claimed_until__lt=now)


def claim(lead_ids):
    """Claim the queued, unclaimed leads among `lead_ids`; return (claim id, claimed ids).

    On PostgreSQL the rows are read with FOR UPDATE SKIP LOCKED, so a worker skips the
    rows another worker is claiming instead of waiting for them. SQLite ignores the lock, but its write transactions (started
    with BEGIN IMMEDIATE in settings) run one at a time, which gives the same result.
    """
    claim_id = uuid.uuid4().hex
    now = timezone.now()
    with transaction.atomic():
        claimed = list(
            Lead.objects.select_for_update(skip_locked=True)
            .filter(pk__in=list(lead_ids), sync_status=Lead.SyncStatus.QUEUED)
            .filter(_unclaimed(now))
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        if claimed:
            Lead.objects.filter(pk__in=claimed).update(
                sync_claim=claim_id,
                sync_claimed_until=now + timezone.timedelta(seconds=settings.SYNC_CLAIM_SECONDS),
            )
    return claim_id, claimed


# The fields that end a claim. A sync writes them with the lead's final status in one
# update, so a worker killed right after that write leaves no claim on a finished lead.
RELEASED = {"sync_claim": "", "sync_claimed_until": None}


def release(claim_id):
    """Release the leads still claimed under `claim_id`."""
    Lead.objects.filter(sync_claim=claim_id).update(**RELEASED)


@contextlib.contextmanager
def claimed(lead_ids):
    """Claim the leads for the block and release them after it, also when it raises.

    The block gets the claimed ids, which may be fewer than `lead_ids` or none.
    """
    lead_ids = list(lead_ids)
    claim_id, claimed_ids = claim(lead_ids)
    skipped = len(lead_ids) - len(claimed_ids)
    if skipped:
        logger.info("Claim %s: %d of %d leads are synced, no longer queued or held by "
                    "another worker; skipping them", claim_id, skipped, len(lead_ids))
    try:
        yield claimed_ids
    finally:
        if claimed_ids:
            release(claim_id)


def stale_queued_leads(now=None):
    """Return the leads queued for more than SYNC_STALE_SECONDS and not under a live claim."""
    now = now or timezone.now()
    cutoff = now - timezone.timedelta(seconds=settings.SYNC_STALE_SECONDS)
    return (
        Lead.objects.filter(sync_status=Lead.SyncStatus.QUEUED)
        .filter(Q(sync_queued_at__lt=cutoff) | Q(sync_queued_at__isnull=True))
        .filter(_unclaimed(now))
    )


def sweep_stale_syncs():
    """Queue again every stale queued lead; return how many were queued.

    A lead whose task is only slow in a long queue may be queued twice. The second task
    then finds it synced or claimed and skips it.
    """
    from .services import enqueue_syncs

    with transaction.atomic():
        lead_ids = list(stale_queued_leads().order_by("pk").values_list("pk", flat=True))
        enqueue_syncs(lead_ids)
    if lead_ids:
        logger.warning("Sweep queued %d stale lead syncs again: %s", len(lead_ids),
                       lead_ids[:20])
    return len(lead_ids)


def schedule_sweep(**kwargs):
    """Create or update the django-q2 schedule that runs the sweep (a post_migrate hook)."""
    from django_q.models import Schedule

    Schedule.objects.update_or_create(
        name=SWEEP_SCHEDULE_NAME,
        defaults={
            "func": SWEEP_TASK,
            "schedule_type": Schedule.MINUTES,
            "minutes": settings.SYNC_SWEEP_MINUTES,
            "repeats": -1,
        },
    )
