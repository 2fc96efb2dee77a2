"""Access rules for manual syncs: which leads a user may sync, which sync jobs and
sync logs they may see.

A team admin (and a superuser) may sync any lead of the team. A subteam admin may sync
the leads captured by members of their subteams. A member may sync only the leads they
captured, and only while the lead's integration allows member syncing. A lead of a team
the user does not belong to is reported as not found, so lead ids of other teams cannot
be probed.
"""

from typing import NamedTuple

from teams.models import Membership, SubteamMembership
from teams.selectors import is_team_admin, is_team_member, subteams_administered_by

from . import services
from .models import Integration

LEAD_NOT_FOUND = "No lead with this id in your teams."
NOT_OWN_LEAD = "You can sync only the leads you captured; ask a team admin to sync this lead."
NOT_SUBTEAM_LEAD = ("You can sync only the leads captured by members of the subteams you "
                    "administer; ask a team admin to sync this lead.")
MEMBER_SYNC_OFF = ("Your admins turned member syncing off; ask a team admin to sync this "
                   "lead.")
NO_INTEGRATION = ("This lead cannot sync yet: no Dynamics integration is set up for its "
                  "team. A team admin can connect one on the Sync Settings page.")


class SyncDecision(NamedTuple):
    """Whether a user may sync a lead; `reason` explains a refusal and is empty otherwise."""

    allowed: bool
    reason: str


class SyncPermissions:
    """Decide for one user which leads they may sync, with the lookups cached.

    Checking many leads (a page of My leads, an admin action over a whole list) then costs
    a few queries per team and capturing member instead of several per lead.
    """

    def __init__(self, user):
        self.user = user
        self._active = bool(user and user.is_authenticated and user.is_active)
        self._roles = {}
        self._subteam_captors = {}
        self._integrations = {}

    def check(self, lead) -> SyncDecision:
        """Return whether the user may sync `lead` now, and the reason when not."""
        role = self._role_in_team(lead.team_id)
        if role is None:
            return SyncDecision(False, LEAD_NOT_FOUND)

        acts_as_admin = role == Membership.Role.ADMIN or self._is_subteam_admin_of(lead)
        if not acts_as_admin and lead.captured_by_id != self.user.pk:
            if self._subteam_captors_in(lead.team_id):
                return SyncDecision(False, NOT_SUBTEAM_LEAD)
            return SyncDecision(False, NOT_OWN_LEAD)

        integration = self.integration_for(lead)
        if integration is None:
            return SyncDecision(False, NO_INTEGRATION)
        if not acts_as_admin and not integration.member_sync_allowed:
            return SyncDecision(False, MEMBER_SYNC_OFF)
        if not integration.is_connected:
            problem = services.connection_problem(integration)
            needs_new_sign_in = integration.status == Integration.Status.REAUTHORIZATION_NEEDED
            action = "reconnect" if needs_new_sign_in else "connect Dynamics"
            return SyncDecision(False, (
                f"This lead cannot sync yet. {problem} A team admin must {action} on the "
                f"Sync Settings page."
            ))
        return SyncDecision(True, "")

    def can_see(self, lead) -> bool:
        """Return True if the lead belongs to one of the user's teams."""
        return self._role_in_team(lead.team_id) is not None

    def integration_for(self, lead):
        """Return the integration that syncs `lead` (see services.integration_for_lead)."""
        key = (lead.team_id, lead.captured_by_id)
        if key not in self._integrations:
            self._integrations[key] = services.integration_for_lead(lead)
        return self._integrations[key]

    def _role_in_team(self, team_id):
        """Return the user's Membership.Role in the team, ADMIN for a superuser, or None."""
        if not self._active:
            return None
        if team_id not in self._roles:
            if self.user.is_superuser:
                role = Membership.Role.ADMIN
            else:
                role = (Membership.objects.filter(team_id=team_id, user=self.user)
                        .values_list("role", flat=True).first())
            self._roles[team_id] = role
        return self._roles[team_id]

    def _subteam_captors_in(self, team_id) -> set:
        """Return the ids of the members of the team's subteams that the user administers."""
        if team_id not in self._subteam_captors:
            self._subteam_captors[team_id] = set(
                SubteamMembership.objects.filter(
                    subteam__team_id=team_id,
                    subteam__memberships__user=self.user,
                    subteam__memberships__is_admin=True,
                ).values_list("user_id", flat=True)
            )
        return self._subteam_captors[team_id]

    def _is_subteam_admin_of(self, lead) -> bool:
        return lead.captured_by_id in self._subteam_captors_in(lead.team_id)


def can_sync(user, lead) -> SyncDecision:
    """Return whether `user` may sync `lead` now, as (allowed, reason)."""
    return SyncPermissions(user).check(lead)


def can_see_job(user, job) -> bool:
    """Return True if the job's team is one of the user's teams (else the view returns 404)."""
    return user.is_superuser or is_team_member(user, job.integration.team_id)


def can_view_job(user, job) -> bool:
    """Return True for the user who started the job and for admins of the job's team."""
    if not (user.is_authenticated and user.is_active):
        return False
    return job.requested_by_id == user.pk or is_team_admin(user, job.integration.team_id)


def can_see_integration(user, integration) -> bool:
    """Return True if the integration's team is one of the user's teams (else the view returns 404)."""
    return user.is_superuser or is_team_member(user, integration.team_id)


def can_view_sync_log(user, integration) -> bool:
    """Return True for team admins, and for subteam admins of a subteam's integration."""
    if is_team_admin(user, integration.team_id):
        return True
    if integration.subteam_id is None:
        return False
    return subteams_administered_by(user).filter(pk=integration.subteam_id).exists()
