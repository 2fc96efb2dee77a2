"""Read-only queries about leads."""

from django.db.models import QuerySet

from .models import Lead


def leads_captured_by(user) -> QuerySet[Lead]:
    """Return the leads the user captured, newest first."""
    return Lead.objects.filter(captured_by=user)
