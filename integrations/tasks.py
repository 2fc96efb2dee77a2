"""Background tasks run by django-q2 workers. Each takes ids and calls one service."""

from . import services


def sync_lead(lead_id):
    """Sync one lead to Dynamics; safe to run more than once for the same lead."""
    log = services.sync_lead_now(lead_id)
    return log.outcome if log else None


def sync_leads(lead_ids):
    """Sync many leads in bulk; safe to run more than once for the same leads."""
    logs = services.sync_leads_now(lead_ids)
    return {lead_id: log.outcome if log else None for lead_id, log in logs.items()}
