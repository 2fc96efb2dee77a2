"""Read-only queries about leads."""

from django.db.models import QuerySet

from teams.selectors import teams_of_member

from .models import Lead


def leads_captured_by(user) -> QuerySet[Lead]:
    """Return the leads the user captured, newest first."""
    return Lead.objects.filter(captured_by=user)


def leads_in_teams_of(user) -> QuerySet[Lead]:
    """Return the leads of every team the user belongs to (every lead for a superuser)."""
    if user.is_active and user.is_superuser:
        return Lead.objects.all()
    return Lead.objects.filter(team__in=teams_of_member(user))
