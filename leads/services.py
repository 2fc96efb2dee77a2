"""Capturing leads: choosing the team, validating the fields and saving the lead."""

import logging

from django.core.exceptions import ValidationError
from django.db import transaction

from integrations.services import schedule_sync_for_new_lead
from teams.models import Team
from teams.selectors import is_team_member, teams_of_member

from .models import Lead

logger = logging.getLogger(__name__)

# Lead fields that a capture may set. The sync fields belong to the integration.
CAPTURE_FIELDS = (
    "first_name", "last_name", "email", "phone", "company",
    "job_title", "website", "notes",
)
NO_TEAM_MESSAGE = (
    "You are not a member of any team. Ask a team admin to add you before capturing leads."
)
# A lead needs at least one of these, because without one it cannot be contacted
# or matched to a Dynamics record.
IDENTIFYING_FIELDS = ("first_name", "last_name", "email", "phone", "company")


class CaptureTeamError(Exception):
    """The team for a capture cannot be chosen."""


class NoTeamError(CaptureTeamError):
    """The member belongs to no team."""


class TeamRequiredError(CaptureTeamError):
    """The member belongs to several teams and the request named none."""


class NotTeamMemberError(CaptureTeamError):
    """The member does not belong to the named team."""


def choose_capture_team(*, member, team: Team | int | None = None) -> Team:
    """Return the team a new lead of `member` goes to.

    With `team` (a Team or a team id) given, the member must belong to it; a team that
    does not exist gets the same answer as someone else's team. Without, the member must
    belong to exactly one team. Raises a CaptureTeamError subclass with a message for
    the caller otherwise.
    """
    if team is not None:
        team_id = team.pk if isinstance(team, Team) else team
        found = team if isinstance(team, Team) else Team.objects.filter(pk=team_id).first()
        if found is None or not is_team_member(member, found):
            raise NotTeamMemberError(
                f"You are not a member of team {team_id}. "
                f"Use one of your teams: {_team_ids_text(member)}."
            )
        return found

    teams = list(teams_of_member(member)[:2])
    if not teams:
        raise NoTeamError(NO_TEAM_MESSAGE)
    if len(teams) > 1:
        raise TeamRequiredError(
            "You are a member of several teams. Set team to one of: "
            f"{_team_ids_text(member)}."
        )
    return teams[0]


def _team_ids_text(member) -> str:
    team_ids = teams_of_member(member).order_by("pk").values_list("pk", flat=True)
    return ", ".join(str(team_id) for team_id in team_ids) or "none"


def validate_identifying_fields(data: dict) -> None:
    """Raise ValidationError unless `data` has a non-empty identifying field."""
    if not any((data.get(name) or "").strip() for name in IDENTIFYING_FIELDS):
        raise ValidationError(
            "Enter at least one of first_name, last_name, email, phone or company."
        )


def capture_lead(*, member, team: Team, data: dict) -> Lead:
    """Save a lead that `member` captured for `team`, and schedule its sync.

    `data` contains values for CAPTURE_FIELDS, already validated by a form or serializer.
    Raises NotTeamMemberError if the member does not belong to the team, ValueError
    for keys outside CAPTURE_FIELDS, and ValidationError for invalid values.
    """
    unknown = sorted(set(data) - set(CAPTURE_FIELDS))
    if unknown:
        raise ValueError(f"Lead fields {unknown} cannot be set at capture.")
    if not is_team_member(member, team):
        raise NotTeamMemberError(f"User {member.pk} is not a member of team {team.pk}.")
    validate_identifying_fields(data)

    lead = Lead(team=team, captured_by=member, **data)
    lead.full_clean()
    with transaction.atomic():
        lead.save()
        # The hook enqueues the sync on commit, so a rolled-back capture never syncs.
        schedule_sync_for_new_lead(lead)

    logger.info("Captured lead %s for team %s by member %s", lead.pk, team.pk, member.pk)
    return lead
