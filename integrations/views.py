"""Sync Settings pages: connect a Dynamics org and see who is connected.

Views parse input, check that the user administers the team and call one service.
"""

import logging

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from leads.models import Lead
from teams.models import Team
from teams.selectors import teams_administered_by

from . import connection, services
from .client import errors
from .models import Integration

logger = logging.getLogger(__name__)

SIGN_IN_SESSION_KEY = "dynamics_sign_in"


def _administered_team(user, team_id):
    team = get_object_or_404(Team, pk=team_id)
    if not teams_administered_by(user).filter(pk=team.pk).exists():
        raise Http404("No team with that id is administered by you.")
    return team


@login_required
@require_GET
def sync_settings(request):
    teams = list(teams_administered_by(request.user).order_by("name"))
    integrations = {
        integration.team_id: integration
        for integration in Integration.objects.filter(team__in=teams, subteam__isnull=True)
    }
    rows = [{"team": team, "integration": integrations.get(team.pk)} for team in teams]
    return render(request, "integrations/sync_settings.html", {
        "rows": rows,
        "title": "Sync Settings",
        "default_org_url": settings.DYNAMICS_ORG_URL,
    })


@login_required
@require_POST
def connect(request, team_id):
    """Start the Microsoft sign-in that connects the team's Dynamics org."""
    team = _administered_team(request.user, team_id)
    integration = services.get_or_create_team_integration(team)
    previous_org = services.point_at_configured_org(integration)
    if previous_org:
        messages.warning(request, f"The Dynamics org changed from {previous_org} to "
                                  f"{integration.org_url}; sign in to the new org.")
    redirect_uri = settings.DYNAMICS_REDIRECT_URI or request.build_absolute_uri(
        reverse("integrations:callback")
    )
    try:
        flow = connection.begin_sign_in(integration.org_url, redirect_uri)
    except (ValueError, OSError) as error:
        # MSAL raises ValueError when the authority's discovery document is unusable, and
        # requests raises OSError subclasses when the authority cannot be reached.
        logger.error("Sign-in could not start for integration %s: %s", integration.pk, error)
        messages.error(request, f"Could not reach the Microsoft sign-in at "
                                f"{settings.DYNAMICS_AUTHORITY}: {error}")
        return redirect("integrations:settings")
    request.session[SIGN_IN_SESSION_KEY] = {"flow": flow, "integration_id": integration.pk}
    logger.info("Sign-in started for integration %s by user %s", integration.pk,
                request.user.pk)
    return redirect(flow["auth_uri"])


@login_required
@require_GET
def callback(request):
    """Finish the sign-in that `connect` started; Microsoft redirects the browser here."""
    pending = request.session.pop(SIGN_IN_SESSION_KEY, None)
    if not pending:
        messages.error(request, "No Dynamics sign-in was in progress in this browser. "
                                "Click Connect Dynamics to start one.")
        return redirect("integrations:settings")
    integration = get_object_or_404(Integration, pk=pending["integration_id"])
    _administered_team(request.user, integration.team_id)

    response = request.GET.dict()
    if "code" not in response and "error" not in response:
        messages.error(request, "The sign-in response carried no authorization code. "
                                "Click Connect Dynamics to start again.")
        return redirect("integrations:settings")
    try:
        integration = services.connect_integration(
            integration, pending["flow"], response, request.user
        )
    except connection.ConnectError as error:
        logger.warning("Sign-in failed for integration %s: %s", integration.pk, error)
        messages.error(request, str(error))
    except errors.DataverseError as error:
        logger.error("Reading the Dynamics user failed for integration %s: %s",
                     integration.pk, error)
        messages.error(request, f"Signed in, but reading your Dynamics user failed: {error}")
    else:
        messages.success(
            request,
            f"Connected to Dynamics as {integration.integration_user_email}.",
        )
    return redirect("integrations:settings")


@login_required
@require_POST
def update_settings(request, integration_id):
    integration = get_object_or_404(Integration, pk=integration_id)
    _administered_team(request.user, integration.team_id)
    integration.auto_sync = request.POST.get("auto_sync") == "on"
    integration.save(update_fields=["auto_sync", "updated_at"])
    logger.info("Integration %s: auto sync set to %s by user %s", integration.pk,
                integration.auto_sync, request.user.pk)
    messages.success(request, f"Auto Sync is {'on' if integration.auto_sync else 'off'}.")
    return redirect("integrations:settings")


@login_required
@require_GET
def preview(request, lead_id):
    """Show what a sync of one lead would do, without writing to Dynamics."""
    lead = get_object_or_404(Lead, pk=lead_id)
    _administered_team(request.user, lead.team_id)
    context = {"title": f"Sync preview: {lead}", "lead": lead}
    try:
        context["preview"] = services.preview_sync(lead.pk)
    except LookupError as error:
        context["error"] = str(error)
    except errors.DataverseError as error:
        logger.warning("Preview of lead %s failed: %s", lead.pk, error)
        context["error"] = services.readable_error(error)
    return render(request, "integrations/preview.html", context)
