"""Services behind the Sync Settings page: who may manage which integration, saving
settings and mappings with their history, and checking the Dynamics connection.

Views parse the forms and call these. Every write here is logged with the ids involved.
"""

import logging
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q

from teams.selectors import subteams_administered_by, teams_administered_by

from . import connection, field_mappings
from .client import errors
from .models import FieldMapping, Integration, SettingsChange

logger = logging.getLogger(__name__)

# Settings that the page edits, in the order the history lists them.
SETTING_FIELDS = (
    "auto_sync", "primary_object", "sync_notes", "update_existing_contacts",
    "search_accounts_by_website", "member_sync_allowed",
)
MAPPING_FIELDS = ("column", "source", "fixed_value", "mode")

# Privilege depths from the narrowest to the widest, as RetrieveUserPrivileges names them.
DEPTHS = {
    "Basic": "Basic: the user's own records",
    "Local": "Local: records of the user's business unit",
    "Deep": "Deep: records of the user's business unit and its child units",
    "Global": "Global: every record in the organization",
}

# The privileges a sync uses and what it cannot do without each one. Dataverse names a
# privilege prv<action><table>, and calls the annotation table "Note" in these names.
REQUIRED_PRIVILEGES = (
    ("prvCreateLead", "Without it no new leads can be created."),
    ("prvReadLead", "Without it existing leads cannot be found by email or phone, so "
                    "no lead syncs with Leads as the primary object."),
    ("prvWriteLead", "Without it existing leads cannot be updated."),
    ("prvAppendLead", "Without it a lead cannot be linked to its account."),
    ("prvAppendToLead", "Without it no note can be attached to a lead."),
    ("prvCreateContact", "Without it no new contacts can be created with Contacts as the "
                         "primary object."),
    ("prvReadContact", "Without it existing contacts cannot be found, so Contacts as the "
                       "primary object and Update Contact Logic do not work."),
    ("prvWriteContact", "Without it existing contacts cannot be updated."),
    ("prvAppendContact", "Without it a contact cannot be linked to its account."),
    ("prvAppendToContact", "Without it no note can be attached to a contact."),
    ("prvCreateAccount", "Without it no account can be created for a new company."),
    ("prvReadAccount", "Without it existing accounts cannot be found by website, company "
                       "name or email domain."),
    ("prvWriteAccount", "Without it the Accounts field mappings cannot update existing "
                        "accounts."),
    ("prvAppendAccount", "Without it an account cannot refer to other records, for "
                         "example an owner team."),
    ("prvAppendToAccount", "Without it leads and contacts cannot be linked to an account."),
    ("prvCreateNote", "Without it the lead's notes cannot be added as a Dynamics note."),
    ("prvReadNote", "Without it the note written by an earlier sync cannot be read, so a "
                    "re-sync of a lead with notes fails."),
    ("prvWriteNote", "Without it a note written by an earlier sync cannot be updated."),
    ("prvAppendNote", "Without it a note cannot be attached to its lead or contact."),
    ("prvAppendToNote", "Without it no record can be linked to a note, for example a "
                        "file attachment; the sync itself attaches nothing to notes."),
)


# -- Access -----------------------------------------------------------------------------

def integrations_managed_by(user):
    """Return the integrations the user may manage.

    Team admins manage their team's full-team integration and every subteam's; a subteam
    admin manages only the integration of that subteam.
    """
    return Integration.objects.filter(
        Q(team__in=teams_administered_by(user))
        | Q(subteam__in=subteams_administered_by(user))
    ).select_related("team", "subteam").order_by("team__name", "subteam__name", "pk")


def assignment_choices(user, integration):
    """Return [(value, label)] of the scopes the user may give `integration`.

    "team" is the full team, offered to team admins only, and "subteam:<id>" is one
    subteam.
    """
    choices = []
    if teams_administered_by(user).filter(pk=integration.team_id).exists():
        choices.append(("team", f"Full team: {integration.team.name}"))
    subteams = subteams_administered_by(user).filter(team_id=integration.team_id)
    for subteam in subteams.order_by("name"):
        choices.append((f"subteam:{subteam.pk}", f"Subteam: {subteam.name}"))
    return choices


def subteam_from_assignment(value):
    """Return the subteam id that an assignment value names, or None for the full team."""
    if value == "team":
        return None
    return int(value.split(":", 1)[1])


def assignment_of(integration):
    return f"subteam:{integration.subteam_id}" if integration.subteam_id else "team"


def check_assignment_free(integration, subteam_id):
    """Raise ValidationError when another integration already has the chosen scope."""
    others = Integration.objects.filter(team_id=integration.team_id).exclude(
        pk=integration.pk)
    if subteam_id is None:
        other = others.filter(subteam__isnull=True).first()
        if other:
            raise ValidationError("The full team already has an integration (connected as "
                                  f"{other.integration_user_email or 'nobody yet'}). "
                                  "Choose a subteam or change that integration.")
        return
    other = others.filter(subteam_id=subteam_id).select_related("subteam").first()
    if other:
        raise ValidationError(f"The subteam {other.subteam.name} already has an "
                              "integration. Choose another subteam or change that one.")


# -- Creating and disconnecting ---------------------------------------------------------

def create_subteam_integration(user, subteam):
    """Create an integration for `subteam`, not yet connected, with the default mappings.

    Raises ValidationError naming the subteam when it already has one.
    """
    existing = Integration.objects.filter(subteam=subteam).first()
    if existing:
        raise ValidationError(f"The subteam {subteam.name} already has an integration.")
    try:
        with transaction.atomic():
            integration = Integration.objects.create(
                team_id=subteam.team_id, subteam=subteam, org_url=settings.DYNAMICS_ORG_URL)
            field_mappings.create_default_mappings(integration)
    except IntegrityError as error:
        # Two admins added one at the same moment; the constraint let only one through.
        raise ValidationError(
            f"The subteam {subteam.name} already has an integration.") from error
    SettingsChange.objects.create(integration=integration, changed_by=user, changes={
        "assignment": {"old": None, "new": subteam.name},
    })
    logger.info("Integration %s created for subteam %s by user %s", integration.pk,
                subteam.pk, user.pk)
    return integration


def disconnect(integration, user):
    """Delete the stored sign-in or application user secret and mark the integration
    disconnected.

    Settings, mappings and the environment stay, so reconnecting restores the sync as
    it was.
    """
    old_status = integration.status
    integration.token_cache_encrypted = ""
    integration.msal_account_id = ""
    integration.app_client_secret_encrypted = ""
    integration.status = Integration.Status.DISCONNECTED
    integration.save(update_fields=["token_cache_encrypted", "msal_account_id",
                                    "app_client_secret_encrypted", "status", "updated_at"])
    connection.forget_application_tokens(integration.pk)
    SettingsChange.objects.create(integration=integration, changed_by=user, changes={
        "status": {"old": old_status, "new": integration.status},
    })
    logger.info("Integration %s disconnected by user %s", integration.pk, user.pk)


# -- Saving settings and mappings -------------------------------------------------------

def _describe_mapping(values):
    return {field: values[field] for field in ("entity", *MAPPING_FIELDS)}


def save_settings(integration, user, cleaned_settings, mapping_edits):
    """Apply the page's settings and mapping edits and record them in SettingsChange.

    `cleaned_settings` has the SETTING_FIELDS and "assignment"; `mapping_edits` is a
    MappingEdits of already validated rows. Returns the SettingsChange, or None when
    nothing changed. Raises ValidationError when another integration took the chosen
    scope in the meantime.
    """
    changes = {}
    for name in SETTING_FIELDS:
        old, new = getattr(integration, name), cleaned_settings[name]
        if old != new:
            changes[name] = {"old": old, "new": new}
            setattr(integration, name, new)

    subteam_id = subteam_from_assignment(cleaned_settings["assignment"])
    if subteam_id != integration.subteam_id:
        check_assignment_free(integration, subteam_id)
        changes["assignment"] = {"old": _scope_name(integration, integration.subteam_id),
                                 "new": _scope_name(integration, subteam_id)}
        integration.subteam_id = subteam_id

    mapping_changes = {}
    try:
        with transaction.atomic():
            integration.save()
            mapping_changes = _apply_mappings(integration, mapping_edits)
            if mapping_changes:
                changes["mappings"] = mapping_changes
            record = None
            if changes:
                record = SettingsChange.objects.create(
                    integration=integration, changed_by=user, changes=changes)
    except IntegrityError as error:
        raise ValidationError("Another admin saved a conflicting change at the same time. "
                              "Reload the page and save again.") from error
    logger.info("Integration %s settings saved by user %s: %s", integration.pk, user.pk,
                sorted(changes) or "no changes")
    return record


def _scope_name(integration, subteam_id):
    if subteam_id is None:
        return "Full team"
    return integration.team.subteams.get(pk=subteam_id).name


@dataclass
class MappingEdits:
    """Validated mapping rows from the page: new ones, changed ones and removed ones."""

    # Dicts with entity, column, source, fixed_value and mode.
    added: list
    # (FieldMapping as stored, dict of new values).
    changed: list
    removed: list


def _apply_mappings(integration, edits):
    """Write the mapping edits and return the history entry, {} when nothing changed."""
    result = {}
    removed = []
    for mapping in edits.removed:
        removed.append(_describe_mapping(vars(mapping)))
        mapping.delete()

    changed = []
    for mapping, values in edits.changed:
        diff = {field: {"old": getattr(mapping, field), "new": values[field]}
                for field in MAPPING_FIELDS if getattr(mapping, field) != values[field]}
        if not diff:
            continue
        for field in MAPPING_FIELDS:
            setattr(mapping, field, values[field])
        mapping.save()
        changed.append({"entity": mapping.entity, "column": mapping.column, **diff})

    added = []
    next_position = max(
        (row.position for row in integration.field_mappings.all()), default=-1) + 1
    for values in edits.added:
        FieldMapping.objects.create(integration=integration, position=next_position,
                                    **_describe_mapping(values))
        next_position += 1
        added.append(_describe_mapping(values))

    for key, rows in (("added", added), ("changed", changed), ("removed", removed)):
        if rows:
            result[key] = rows
    return result


# -- Checking the connection ------------------------------------------------------------

@dataclass
class Check:
    """One step of a connection test and its outcome."""

    name: str
    passed: bool
    detail: str


def _plain_error(error):
    """Return a client error as a sentence for an admin, with the next step."""
    if isinstance(error, errors.AuthorizationRequired):
        return f"The Microsoft sign-in no longer works. Click Reconnect. {error.message}"
    if isinstance(error, errors.PermissionDenied):
        return ("The integration user lacks a privilege. See Permissions. Dynamics said: "
                f"{error.message}")
    if isinstance(error, (errors.TransientError, errors.Throttled)):
        return f"Dynamics was unreachable or busy. Try again later. {error.message}"
    return f"Dynamics said: {error}"


def check_connection(integration):
    """Run WhoAmI, read the user's roles and query one lead; return a list of Check.

    An expired or revoked sign-in also marks the integration "Re-authorization needed",
    as a sync would.
    """
    if not integration.has_credentials:
        return [Check("Sign-in", False, "No Microsoft sign-in is stored. Click Connect "
                                        "Dynamics first.")]
    client = connection.client_for(integration)
    # A button click should not wait through the sync's full retry schedule.
    client.max_retries = 1
    checks = []
    user_id = integration.dynamics_user_id

    steps = (
        ("Sign-in and WhoAmI", lambda: client.who_am_i()),
        ("Read the user's roles", lambda: client.user_with_roles(user_id)),
        ("Query leads", lambda: client.query("leads", select=["leadid"], top=1)),
    )
    for name, step in steps:
        try:
            result = step()
        except errors.DataverseError as error:
            logger.warning("Connection test of integration %s: %s failed: %s",
                           integration.pk, name, error)
            checks.append(Check(name, False, _plain_error(error)))
            if isinstance(error, errors.AuthorizationRequired):
                Integration.objects.filter(pk=integration.pk).update(
                    status=Integration.Status.REAUTHORIZATION_NEEDED, last_error=str(error))
                break
            continue
        checks.append(Check(name, True, _check_detail(name, result)))
        if name == "Sign-in and WhoAmI":
            user_id = result["UserId"]
    logger.info("Connection test of integration %s: %d of %d checks passed",
                integration.pk, sum(check.passed for check in checks), len(checks))
    return checks


def _check_detail(name, result):
    if name == "Sign-in and WhoAmI":
        return f"Signed in as Dynamics user {result['UserId']}."
    if name == "Read the user's roles":
        roles = ", ".join(role["name"] for role in result["roles"]) or "no security roles"
        return f"Roles: {roles}."
    return f"Dynamics returned {len(result)} lead{'s' if len(result) != 1 else ''}."


def read_privileges(integration, with_roles=True):
    """Read the integration user's roles and privileges live from Dynamics.

    Returns {"roles": [names], "privileges": [{"name", "depth", "depth_label",
    "present", "consequence"}]} for the REQUIRED_PRIVILEGES. With `with_roles` false,
    the roles are not read and "roles" is None. Raises a client error when Dynamics
    cannot be read.
    """
    client = connection.client_for(integration)
    client.max_retries = 1
    user_id = integration.dynamics_user_id or client.who_am_i()["UserId"]
    roles = None
    if with_roles:
        roles = [role["name"] for role in client.user_with_roles(user_id)["roles"]]
    granted = client.request(
        "GET", f"systemusers({user_id})/Microsoft.Dynamics.CRM.RetrieveUserPrivileges()"
    ).json().get("RolePrivileges", [])

    depth_order = list(DEPTHS)
    depths = {}
    for row in granted:
        name, depth = row.get("PrivilegeName"), row.get("Depth")
        # Several roles can grant one privilege, and the widest depth applies.
        rank = depth_order.index(depth) if depth in DEPTHS else -1
        best = depths.get(name)
        if best is None or rank > (depth_order.index(best) if best in DEPTHS else -1):
            depths[name] = depth
    privileges = [
        {"name": name, "depth": depths.get(name), "depth_label": DEPTHS.get(depths.get(name),
                                                                            depths.get(name)),
         "present": name in depths, "consequence": consequence}
        for name, consequence in REQUIRED_PRIVILEGES
    ]
    logger.info("Integration %s: read %d privileges of Dynamics user %s", integration.pk,
                len(granted), user_id)
    return {"roles": roles, "privileges": privileges}
