"""Write operations on teams and their memberships."""

import logging

from django.core.exceptions import ValidationError
from django.db import transaction

from .models import Membership, Subteam, SubteamMembership, Team
from .selectors import is_team_member

logger = logging.getLogger(__name__)


@transaction.atomic
def create_team(name: str, *, default_phone_region: str = "US", admin=None) -> Team:
    """Create a team, and make `admin` (a user, optional) its first admin.

    Raises ValidationError if the name is empty, taken, or too long.
    """
    team = Team(name=name.strip(), default_phone_region=default_phone_region.upper())
    team.full_clean()
    team.save()
    logger.info("Created team %s", team.pk)

    if admin is not None:
        add_member(team, admin, Membership.Role.ADMIN)
    return team


@transaction.atomic
def add_member(team: Team, user, role: str = Membership.Role.MEMBER) -> Membership:
    """Add the user to the team with `role`, or change the role of an existing member.

    A team admin also gets `is_staff`, which the Django admin requires at login.
    Demoting an admin leaves `is_staff` alone, because the user may still administer
    another team. Without an admin role the Django admin shows that user nothing.
    """
    if role not in Membership.Role.values:
        raise ValidationError(
            f"Invalid role {role!r}. Use one of: {', '.join(Membership.Role.values)}."
        )

    membership, created = Membership.objects.update_or_create(
        team=team, user=user, defaults={"role": role}
    )
    if role == Membership.Role.ADMIN and not user.is_staff:
        user.is_staff = True
        user.save(update_fields=["is_staff"])

    logger.info(
        "%s member %s of team %s with role %s",
        "Added" if created else "Updated", user.pk, team.pk, role,
    )
    return membership


@transaction.atomic
def add_subteam_member(subteam: Subteam, user, is_admin: bool = False) -> SubteamMembership:
    """Add a member of the subteam's team to the subteam, or change their admin flag.

    Raises ValidationError if the user is not a member of `subteam.team`.
    """
    if not is_team_member(user, subteam.team_id):
        raise ValidationError(
            f"User {user} is not a member of team {subteam.team}. "
            "Add them to the team before adding them to one of its subteams."
        )

    subteam_membership, created = SubteamMembership.objects.update_or_create(
        subteam=subteam, user=user, defaults={"is_admin": is_admin}
    )
    logger.info(
        "%s member %s of subteam %s (admin=%s)",
        "Added" if created else "Updated", user.pk, subteam.pk, is_admin,
    )
    return subteam_membership
