"""Background tasks run by django-q2 workers. Each takes ids and calls services.

A sync task claims its leads first (see claims.py), so it is safe to run twice and safe
beside other workers: a lead that another run has claimed, or that is no longer queued, is
skipped.
"""

import logging

from . import claims, services

logger = logging.getLogger(__name__)


def sync_lead(lead_id):
    """Sync one queued lead to Dynamics; return the outcome, or None when skipped."""
    with claims.claimed([lead_id]) as claimed_ids:
        if not claimed_ids:
            return None
        log = services.sync_lead_now(lead_id)
    return log.outcome if log else None


def sync_leads(lead_ids):
    """Sync many queued leads in bulk; return {lead id: outcome} for the claimed ones."""
    with claims.claimed(lead_ids) as claimed_ids:
        if not claimed_ids:
            return {}
        logs = services.sync_leads_now(claimed_ids)
    return {lead_id: log.outcome if log else None for lead_id, log in logs.items()}


def sweep_stale_syncs():
    """Queue again the leads whose sync task was lost; return how many."""
    return claims.sweep_stale_syncs()
