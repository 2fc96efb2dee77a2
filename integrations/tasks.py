"""Background tasks run by django-q2 workers. Each takes ids and calls one service."""

from . import services


def sync_lead(lead_id):
    """Sync one lead to Dynamics; safe to run more than once for the same lead."""
    log = services.sync_lead_now(lead_id)
    return log.outcome if log else None
