"""Read-only queries about teams, memberships and who may manage what.

Superusers count as admins of every team and subteam. Inactive and anonymous users
administer nothing and belong to no team.
"""

from django.db.models import Q, QuerySet

from .models import Membership, Subteam, Team


def _is_active_user(user) -> bool:
    return bool(user and user.is_authenticated and user.is_active)


def teams_administered_by(user) -> QuerySet[Team]:
    """Return the teams where the user has the admin role (all teams for a superuser)."""
    if not _is_active_user(user):
        return Team.objects.none()
    if user.is_superuser:
        return Team.objects.all()
    return Team.objects.filter(
        memberships__user=user, memberships__role=Membership.Role.ADMIN
    ).distinct()


def team_ids_administered_by(user) -> set[int]:
    """Return the ids of the teams that `teams_administered_by` returns."""
    return set(teams_administered_by(user).values_list("pk", flat=True))


def teams_of_member(user) -> QuerySet[Team]:
    """Return the teams the user belongs to in any role.

    Superusers get only the teams they are members of, because capturing a lead needs
    a real membership, unlike administering one.
    """
    if not _is_active_user(user):
        return Team.objects.none()
    return Team.objects.filter(memberships__user=user).distinct()


def is_team_member(user, team) -> bool:
    """Return True if the user belongs to the team in any role."""
    return _is_active_user(user) and Membership.objects.filter(team=team, user=user).exists()


def is_team_admin(user, team) -> bool:
    """Return True if the user may administer the team (always for a superuser)."""
    if not _is_active_user(user):
        return False
    if user.is_superuser:
        return True
    return Membership.objects.filter(
        team=team, user=user, role=Membership.Role.ADMIN
    ).exists()


def subteams_administered_by(user) -> QuerySet[Subteam]:
    """Return the subteams the user may administer.

    These are the subteams where the user is a subteam admin, plus every subteam of a
    team where the user is a team admin, because a team admin manages the whole team.
    """
    if not _is_active_user(user):
        return Subteam.objects.none()
    if user.is_superuser:
        return Subteam.objects.all()
    return Subteam.objects.filter(
        Q(memberships__user=user, memberships__is_admin=True)
        | Q(team__memberships__user=user, team__memberships__role=Membership.Role.ADMIN)
    ).distinct()
