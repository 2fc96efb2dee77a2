"""Integration services: connecting an org and scheduling lead syncs."""

import logging

logger = logging.getLogger(__name__)


def schedule_sync_for_new_lead(lead):
    """Queue a sync of a just-captured lead if its integration has Auto Sync on.

    Call inside the transaction that created the lead: the task is enqueued on commit,
    so a rolled-back capture never reaches Dynamics.
    """
    # TODO: replaced by the real scheduling in this change series.
    return None
