"""Capturing leads: choosing the team, validating the fields and saving the lead."""

import logging

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from integrations.services import schedule_sync_for_new_lead
from teams.models import Team
from teams.selectors import is_team_member, teams_of_member

from .models import Lead

logger = logging.getLogger(__name__)

# Lead fields that a capture may set. The sync fields belong to the integration.
CAPTURE_FIELDS = (
    "first_name", "last_name", "email", "phone", "mobile_phone", "company",
    "job_title", "website", "street", "city", "postal_code", "region", "country",
    "notes",
)
NO_TEAM_MESSAGE = (
    "You are not a member of any team. Ask a team admin to add you before capturing leads."
)
# A lead needs at least one of these, because without one it cannot be contacted
# or matched to a Dynamics record.
IDENTIFYING_FIELDS = ("first_name", "last_name", "email", "phone", "mobile_phone", "company")


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

    With `team` (a Team or a team id) given, the member must belong to it. A team that
    does not exist gets the same error as someone else's team. Without, the member must
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
            "Enter at least one of first_name, last_name, email, phone, mobile_phone or "
            "company."
        )


def capture_lead(
    *, member, team: Team, data: dict, source: str = Lead.Source.API,
    client_reference: str = "",
) -> Lead:
    """Save a lead that `member` captured for `team`, and schedule its sync.

    `data` contains values for CAPTURE_FIELDS, already validated by a form or serializer.
    `source` is a Lead.Source value, and `client_reference` the capturing client's own id
    for the lead ("" for none). Raises NotTeamMemberError if the member does not belong
    to the team, ValueError for keys outside CAPTURE_FIELDS, and ValidationError for
    invalid values, including a `client_reference` that the member already used (use
    capture_lead_once to get the first lead back instead).
    """
    lead = _build_lead(member=member, team=team, data=data, source=source,
                       client_reference=client_reference)
    lead.full_clean()
    _save_new_lead(lead)
    return lead


def capture_lead_once(
    *, member, team: Team, data: dict, source: str, client_reference: str,
) -> tuple[Lead, bool]:
    """Save a lead like capture_lead, unless `member` already captured `client_reference`.

    Returns `(lead, created)`. When the member already has a lead with this reference,
    that lead is returned unchanged with `created` False, whatever `team` and `data`
    contain, because the first capture wins. Two concurrent calls with one reference save one lead,
    because the database's unique constraint on (captured_by, client_reference) rejects
    the second insert, which then reads the first lead back.
    Raises ValueError for an empty `client_reference`, and what capture_lead raises.
    """
    if not client_reference:
        raise ValueError("capture_lead_once needs a non-empty client_reference.")

    existing = find_lead_by_reference(member, client_reference)
    if existing is not None:
        return existing, False

    lead = _build_lead(member=member, team=team, data=data, source=source,
                       client_reference=client_reference)
    # The unique constraint is left to the database, because a check here could pass for
    # two concurrent requests. The insert below decides the race.
    lead.full_clean(validate_constraints=False)
    try:
        # Inside a caller's transaction, the atomic block in _save_new_lead is a savepoint,
        # so that transaction stays usable after the IntegrityError.
        _save_new_lead(lead)
    except IntegrityError:
        existing = find_lead_by_reference(member, client_reference)
        if existing is None:
            raise
        logger.info("Capture by member %s with reference %r lost a race to lead %s, "
                    "which is returned", member.pk, client_reference, existing.pk)
        return existing, False
    return lead, True


def find_lead_by_reference(member, client_reference: str) -> Lead | None:
    """Return the lead that `member` captured with `client_reference`, or None."""
    leads = Lead.objects.filter(captured_by=member, client_reference=client_reference)
    return leads.select_related("team").first()


def _build_lead(*, member, team, data, source, client_reference) -> Lead:
    unknown = sorted(set(data) - set(CAPTURE_FIELDS))
    if unknown:
        raise ValueError(f"Lead fields {unknown} cannot be set at capture.")
    if not is_team_member(member, team):
        raise NotTeamMemberError(f"User {member.pk} is not a member of team {team.pk}.")
    validate_identifying_fields(data)
    return Lead(team=team, captured_by=member, source=source,
                client_reference=client_reference, **data)


def _save_new_lead(lead: Lead) -> None:
    with transaction.atomic():
        lead.save()
        # The hook enqueues the sync on commit, so a rolled-back capture never syncs.
        schedule_sync_for_new_lead(lead)

    logger.info("Captured lead %s for team %s by member %s (source %s)",
                lead.pk, lead.team_id, lead.captured_by_id, lead.source)
