"""Sync Settings pages: connect a Dynamics org, check it, and edit settings and mappings.

Views parse input, check that the user manages the integration (team admins manage every
integration of their team, subteam admins only their subteam's) and call services.
"""

import logging
import secrets
import time

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from leads.models import Lead
from teams.models import Team
from teams.selectors import subteams_administered_by, teams_administered_by

from . import connecting, connection, environments, forms, services, settings_page
from .client import errors
from .models import FieldMapping

logger = logging.getLogger(__name__)

SIGN_IN_SESSION_KEY = "dynamics_sign_in"
# The environments a discovery sign-in listed, kept until the admin picks one.
DISCOVERY_SESSION_KEY = "dynamics_discovery"
# Seconds the admin has to pick an environment after signing in.
DISCOVERY_PICK_SECONDS = 15 * 60
# Entries of the settings history shown on the page. The admin lists all of them.
HISTORY_LENGTH = 10


def _administered_team(user, team_id):
    team = get_object_or_404(Team, pk=team_id)
    if not teams_administered_by(user).filter(pk=team.pk).exists():
        raise Http404("No team with that id is administered by you.")
    return team


def _managed_integration(user, integration_id):
    """Return the integration if the user manages it, else raise Http404 as for a missing one."""
    return get_object_or_404(settings_page.integrations_managed_by(user), pk=integration_id)


def _settings_url(integration):
    return reverse("integrations:integration-settings", args=[integration.pk])


# -- The page ---------------------------------------------------------------------------

@login_required
@require_GET
def sync_settings(request):
    """Show the settings of the first integration the user manages, or of ?integration=."""
    managed = settings_page.integrations_managed_by(request.user)
    chosen = request.GET.get("integration")
    if chosen is not None:
        if not chosen.isdigit():
            raise Http404("The integration id must be a number.")
        integration = get_object_or_404(managed, pk=chosen)
    else:
        integration = managed.first()
    return _render_page(request, integration)


@login_required
@require_http_methods(["GET", "POST"])
def integration_settings(request, integration_id):
    """Show one integration's settings, or on POST validate and save settings and mappings."""
    integration = _managed_integration(request.user, integration_id)
    if request.method == "GET":
        return _render_page(request, integration)

    form = forms.SettingsForm(request.POST, integration=integration, user=request.user)
    formset = forms.mapping_formset(integration, request.POST)
    if form.is_valid() and formset.is_valid():
        try:
            change = settings_page.save_settings(
                integration, request.user, form.cleaned_data,
                forms.mapping_edits(formset, integration))
        except ValidationError as error:
            form.add_error(None, error)
        else:
            messages.success(request, "Settings saved." if change else
                             "Settings saved; nothing had changed.")
            return redirect(_settings_url(integration))
    messages.error(request, "Settings not saved. Correct the errors below.")
    return _render_page(request, integration, form, formset, status=400)


def _render_page(request, integration, form=None, formset=None, status=200):
    _drop_expired_discovery(request)
    user = request.user
    managed = list(settings_page.integrations_managed_by(user))
    with_full_team = {row.team_id for row in managed if row.subteam_id is None}
    teams_to_connect = [team for team in teams_administered_by(user).order_by("name")
                        if team.pk not in with_full_team]
    add_subteam_form = _add_subteam_form(user)
    context = {
        "title": "Sync Settings",
        "managed": managed,
        "integration": integration,
        "default_org_url": settings.DYNAMICS_ORG_URL,
        "url_form": forms.EnvironmentUrlForm(initial={
            "environment_url": integration.org_url if integration else
            settings.DYNAMICS_ORG_URL}),
        "teams_to_connect": teams_to_connect,
        "add_subteam_form": add_subteam_form,
        "has_any_access": bool(managed or teams_to_connect
                               or add_subteam_form.fields["subteam"].queryset.exists()),
    }
    if integration is not None:
        form = form or forms.SettingsForm(integration=integration, user=user)
        formset = formset or forms.mapping_formset(integration)
        context.update({
            "form": form,
            "formset": formset,
            "tabs": _mapping_tabs(formset, integration),
            "history": integration.settings_changes.select_related("changed_by")
            [:HISTORY_LENGTH],
        })
    return render(request, "integrations/sync_settings.html", context, status=status)


def _add_subteam_form(user, data=None):
    subteams = subteams_administered_by(user).filter(integrations__isnull=True)
    return forms.AddSubteamIntegrationForm(data, subteams=subteams.order_by("team__name",
                                                                            "name"))


def _mapping_tabs(formset, integration):
    """Group the formset's rows by entity for the Leads, Contacts and Accounts tabs."""
    labels = {"lead": "Leads", "contact": "Contacts", "account": "Accounts"}
    empty = forms.empty_mapping_forms(formset, integration)
    tabs = []
    for entity in FieldMapping.Entity.values:
        rows = [form for form in formset.forms if form["entity"].value() == entity]
        tabs.append({"entity": entity, "label": labels[entity], "rows": rows,
                     "empty_form": empty[entity],
                     "has_errors": any(form.errors for form in rows)})
    return tabs


@login_required
@require_GET
def permissions(request, integration_id):
    """List the integration user's roles and the privileges the sync needs, read live."""
    integration = _managed_integration(request.user, integration_id)
    context = {"title": "Dynamics permissions", "integration": integration,
               "depths": settings_page.DEPTHS}
    if not integration.has_credentials:
        context["error"] = "The integration is not connected. Connect Dynamics first."
    else:
        try:
            context.update(settings_page.read_privileges(integration))
        except errors.DataverseError as error:
            logger.warning("Reading the privileges of integration %s failed: %s",
                           integration.pk, error)
            context["error"] = f"Reading the privileges from Dynamics failed: {error}"
    return render(request, "integrations/permissions.html", context)


# -- Connection actions -----------------------------------------------------------------

@login_required
@require_POST
def connect(request, team_id):
    """Start connecting the team's full-team integration (see `_start_connect`)."""
    team = _administered_team(request.user, team_id)
    integration = connecting.get_or_create_team_integration(team)
    return _start_connect(request, integration)


@login_required
@require_POST
def connect_integration(request, integration_id):
    """Start connecting an existing integration (Reconnect, or a subteam's)."""
    integration = _managed_integration(request.user, integration_id)
    return _start_connect(request, integration)


def _start_connect(request, integration):
    """Start the Microsoft sign-in chosen by the POST.

    mode=discover signs in for the Global Discovery Service and then lists the
    environments. Otherwise the sign-in is for `environment_url`, or without one for the
    integration's current environment. Without a URL, an application user's integration
    opens its form instead, because reconnecting it needs the client secret.
    """
    if request.POST.get("mode") == "discover":
        return _start_sign_in(request, integration, None)
    if "environment_url" not in request.POST:
        if integration.uses_application_user:
            return redirect("integrations:application-user", integration.pk)
        org_url = integration.org_url
    else:
        form = forms.EnvironmentUrlForm(request.POST)
        if not form.is_valid():
            messages.error(request, "Not connected: "
                           + " ".join(form.errors["environment_url"]))
            return redirect(_settings_url(integration))
        org_url = form.cleaned_data["environment_url"]
    try:
        org_url = environments.validate_environment_url(org_url)
    except ValidationError as error:
        messages.error(request, f"Not connected: {error.messages[0]}")
        return redirect(_settings_url(integration))
    return _start_sign_in(request, integration, org_url)


def _start_sign_in(request, integration, org_url):
    """Redirect to the Microsoft sign-in for `org_url`, or for discovery when None."""
    redirect_uri = settings.DYNAMICS_REDIRECT_URI or request.build_absolute_uri(
        reverse("integrations:callback")
    )
    try:
        if org_url is None:
            flow = connection.begin_discovery_sign_in(redirect_uri)
        else:
            flow = connection.begin_sign_in(org_url, redirect_uri)
    except ValidationError as error:
        # DYNAMICS_DISCOVERY_URL is not a Dynamics host.
        logger.error("Discovery sign-in rejected for integration %s: %s", integration.pk,
                     error.messages[0])
        messages.error(request, f"The discovery service is misconfigured: "
                                f"{error.messages[0]}")
        return redirect(_settings_url(integration))
    except (ValueError, OSError) as error:
        # MSAL raises ValueError when the authority's discovery document is unusable, and
        # requests raises OSError subclasses when the authority cannot be reached.
        logger.error("Sign-in could not start for integration %s: %s", integration.pk, error)
        messages.error(request, f"Could not reach the Microsoft sign-in at "
                                f"{settings.DYNAMICS_AUTHORITY}: {error}")
        return redirect(_settings_url(integration))
    request.session[SIGN_IN_SESSION_KEY] = {
        "flow": flow, "integration_id": integration.pk,
        "mode": "discover" if org_url is None else "url", "org_url": org_url,
    }
    logger.info("Sign-in started for integration %s by user %s (%s)", integration.pk,
                request.user.pk, org_url or "discovery")
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
    integration = _managed_integration(request.user, pending["integration_id"])

    response = request.GET.dict()
    if "code" not in response and "error" not in response:
        messages.error(request, "The sign-in response carried no authorization code. "
                                "Click Connect Dynamics to start again.")
        return redirect(_settings_url(integration))
    if pending.get("mode") == "discover":
        return _list_environments(request, integration, pending["flow"], response)
    try:
        integration = connecting.connect_integration(
            integration, pending["flow"], response, request.user, org_url=pending["org_url"]
        )
    except connection.ConnectError as error:
        logger.warning("Sign-in failed for integration %s: %s", integration.pk, error)
        messages.error(request, str(error))
    except errors.DataverseError as error:
        logger.error("Reading the Dynamics user failed for integration %s: %s",
                     integration.pk, error)
        messages.error(request, f"Signed in, but reading your Dynamics user failed: {error}")
    else:
        messages.success(request, _connected_message(integration))
        _warn_missing_privileges(request, integration)
    return redirect(_settings_url(integration))


def _connected_message(integration):
    where = integration.environment_name or integration.org_url
    if integration.uses_application_user:
        return (f"Connected to Dynamics ({where}) as the application user "
                f"{integration.integration_user_name or integration.app_client_id}.")
    return f"Connected to Dynamics as {integration.integration_user_email} ({where})."


def _warn_missing_privileges(request, integration):
    """Add a warning naming the privileges the sync uses that the connected user lacks.

    A failed read only goes to the log: the connection itself succeeded, and See
    Permissions reads the privileges again. The roles were read while connecting.
    """
    try:
        privileges = settings_page.read_privileges(integration, with_roles=False)["privileges"]
    except errors.DataverseError as error:
        logger.warning("Integration %s: could not read privileges after connecting: %s",
                       integration.pk, error)
        return
    missing = [row["name"] for row in privileges if not row["present"]]
    if missing:
        messages.warning(
            request, f"The connected Dynamics user lacks {len(missing)} privileges that the "
                     f"sync uses: {', '.join(missing)}. See Permissions says what each one "
                     f"is for; a Dynamics admin can grant them with a security role.")


def _list_environments(request, integration, flow, response):
    """Finish a discovery sign-in and keep its environments for the pick page."""
    try:
        sign_in, found = connecting.complete_discovery_sign_in(flow, response)
    except (connection.ConnectError, environments.DiscoveryError) as error:
        logger.warning("Discovery sign-in failed for integration %s: %s", integration.pk,
                       error)
        messages.error(request, str(error))
        return redirect(_settings_url(integration))
    if not found:
        messages.error(request, f"{sign_in.username or 'The signed-in user'} cannot reach "
                                "any Dynamics 365 environment. Sign in as another user, or "
                                "connect by entering the environment URL.")
        return redirect(_settings_url(integration))
    # The session is stored server-side (database sessions); the sign-in's token cache
    # stays encrypted there until the admin picks an environment.
    request.session[DISCOVERY_SESSION_KEY] = {
        "integration_id": integration.pk,
        "cache": connection.encrypt_cache(sign_in.cache),
        "account_id": sign_in.account_id,
        "username": sign_in.username,
        "environments": [env.as_dict() for env in found],
        "started": time.time(),
        # Ties a pick to the list that the page showed, when another tab signs in again.
        "listing": _new_listing_id(),
    }
    return redirect("integrations:choose-environment", integration.pk)


def _pending_discovery(request, integration):
    """Return the discovery result kept for `integration`, with its list id, or None
    when there is none or it is older than DISCOVERY_PICK_SECONDS."""
    _drop_expired_discovery(request)
    pending = request.session.get(DISCOVERY_SESSION_KEY)
    if not pending or pending.get("integration_id") != integration.pk:
        return None
    if "listing" not in pending:
        # A list kept before lists had ids gets one, so the page can post it back.
        pending["listing"] = _new_listing_id()
        request.session.modified = True
    return pending


def _new_listing_id():
    """Return a new id for a discovery list, which its pick page posts back."""
    return secrets.token_urlsafe(12)


def _drop_expired_discovery(request):
    """Remove a discovery result older than DISCOVERY_PICK_SECONDS from the session.

    The result contains the sign-in's encrypted refresh token, which an abandoned pick
    would otherwise keep until the session ends.
    """
    pending = request.session.get(DISCOVERY_SESSION_KEY)
    if pending and time.time() - pending.get("started", 0) > DISCOVERY_PICK_SECONDS:
        request.session.pop(DISCOVERY_SESSION_KEY, None)


@login_required
@require_http_methods(["GET", "POST"])
def choose_environment(request, integration_id):
    """List the environments discovery found, and connect the one the admin picks."""
    integration = _managed_integration(request.user, integration_id)
    pending = _pending_discovery(request, integration)
    if request.method == "POST" and "cancel" in request.POST:
        # Only the list this page showed is forgotten. A newer one, from a sign-in in
        # another tab or for another integration, stays.
        if pending is not None and request.POST.get("listing") == pending["listing"]:
            request.session.pop(DISCOVERY_SESSION_KEY, None)
        logger.info("User %s cancelled picking an environment for integration %s",
                    request.user.pk, integration.pk)
        messages.info(request, "Connecting was cancelled; the integration is unchanged.")
        return redirect(_settings_url(integration))
    if pending is None:
        messages.error(request, "No list of environments is waiting for this integration. "
                                "Click Connect Dynamics to sign in again.")
        return redirect(_settings_url(integration))
    if request.method == "POST" and request.POST.get("listing") != pending["listing"]:
        # A sign-in since this page was shown (in another tab, say) replaced its list.
        messages.error(request, f"The list of environments changed after this page was "
                                f"shown: the latest sign-in was as "
                                f"{pending['username'] or 'another Microsoft user'}. Check "
                                "the list below and choose again.")
        return redirect("integrations:choose-environment", integration.pk)
    found = [environments.Environment(**row) for row in pending["environments"]]
    form = forms.EnvironmentChoiceForm(request.POST or None, environments=found)
    if request.method == "GET" or not form.is_valid():
        context = {"title": "Choose a Dynamics environment", "integration": integration,
                   "form": form, "environments": found, "username": pending["username"],
                   "listing": pending["listing"],
                   "choices": [(forms.environment_key(env), env) for env in found]}
        return render(request, "integrations/choose_environment.html", context,
                      status=200 if request.method == "GET" else 400)

    environment = form.chosen()
    request.session.pop(DISCOVERY_SESSION_KEY, None)
    try:
        integration = connecting.connect_discovered_environment(
            integration, request.user, environment, pending["cache"], pending["account_id"])
    except connection.ConnectError as error:
        logger.warning("Connecting integration %s to environment %s failed: %s",
                       integration.pk, environment.unique_name, error)
        messages.error(request, str(error))
    except errors.DataverseError as error:
        logger.error("Reading the Dynamics user of environment %s failed for integration "
                     "%s: %s", environment.unique_name, integration.pk, error)
        messages.error(request, f"Signed in, but reading your Dynamics user in "
                                f"{environment.name} failed: {error}")
    else:
        messages.success(request, _connected_message(integration))
        _warn_missing_privileges(request, integration)
    return redirect(_settings_url(integration))


@login_required
@require_http_methods(["GET", "POST"])
def application_user(request, integration_id):
    """Show the application user form of an integration, or connect with it."""
    integration = _managed_integration(request.user, integration_id)
    return _application_user_page(request, integration.team, integration)


@login_required
@require_http_methods(["GET", "POST"])
def team_application_user(request, team_id):
    """Show or submit the application user form of a team without a full-team
    integration yet; a successful connection creates that integration."""
    team = _administered_team(request.user, team_id)
    return _application_user_page(request, team, None)


def _application_user_page(request, team, integration):
    if request.method == "GET":
        initial = {"environment_url": settings.DYNAMICS_ORG_URL}
        if integration is not None:
            initial = {"environment_url": integration.org_url,
                       "tenant_id": integration.tenant_id,
                       "client_id": integration.app_client_id}
        form = forms.ApplicationUserForm(initial=initial)
        return _render_application_user(request, team, integration, form)

    form = forms.ApplicationUserForm(request.POST)
    if not form.is_valid():
        return _render_application_user(request, team, integration, form, status=400)
    if integration is None:
        integration = connecting.get_or_create_team_integration(team)
    data = form.cleaned_data
    try:
        integration = connecting.connect_application_user(
            integration, request.user, tenant_id=data["tenant_id"],
            client_id=data["client_id"], client_secret=data["client_secret"],
            org_url=data["environment_url"])
    except connection.ConnectError as error:
        logger.warning("Application user %s rejected by Microsoft for integration %s: %s",
                       data["client_id"], integration.pk, error)
        form.add_error(None, str(error))
        return _render_application_user(request, team, integration, form, status=400)
    except errors.DataverseError as error:
        logger.warning("Application user %s rejected by %s for integration %s: %s",
                       data["client_id"], data["environment_url"], integration.pk, error)
        form.add_error(None, _application_user_rejected(error, data["environment_url"]))
        return _render_application_user(request, team, integration, form, status=400)
    messages.success(request, _connected_message(integration))
    _warn_missing_privileges(request, integration)
    return redirect(_settings_url(integration))


def _application_user_rejected(error, org_url):
    if isinstance(error, (errors.AuthorizationRequired, errors.PermissionDenied)):
        return (f"Microsoft issued a token, but {org_url} rejected it: the app is not an "
                "application user of this environment, or the user has no security role. "
                "Add it under Settings > Users + permissions > Application users in the "
                f"Power Platform admin center, then connect again. Dynamics said: "
                f"{error.message}")
    return f"Reading the application user from {org_url} failed: {error}"


def _render_application_user(request, team, integration, form, status=200):
    context = {"title": "Connect with an application user", "team": team,
               "integration": integration, "form": form}
    return render(request, "integrations/application_user.html", context, status=status)


@login_required
@require_POST
def disconnect(request, integration_id):
    integration = _managed_integration(request.user, integration_id)
    settings_page.disconnect(integration, request.user)
    messages.success(request, "Disconnected from Dynamics. The stored sign-in is deleted; "
                              "settings and field mappings are kept for a reconnect.")
    return redirect(_settings_url(integration))


@login_required
@require_POST
def check_connection(request, integration_id):
    """Run the connection checks and report each one as a message."""
    integration = _managed_integration(request.user, integration_id)
    for check in settings_page.check_connection(integration):
        if check.passed:
            messages.success(request, f"{check.name}: passed. {check.detail}")
        else:
            messages.error(request, f"{check.name}: failed. {check.detail}")
    return redirect(_settings_url(integration))


@login_required
@require_POST
def add_subteam_integration(request):
    form = _add_subteam_form(request.user, request.POST)
    if not form.is_valid():
        for error in form.errors.get("subteam", []):
            messages.error(request, f"No integration added: {error}")
        return redirect("integrations:settings")
    try:
        integration = settings_page.create_subteam_integration(
            request.user, form.cleaned_data["subteam"])
    except ValidationError as error:
        messages.error(request, f"No integration added: {' '.join(error.messages)}")
        return redirect("integrations:settings")
    messages.success(request, f"Integration added for the subteam "
                              f"{integration.subteam.name}. Connect Dynamics to start "
                              "syncing its members' leads.")
    return redirect(_settings_url(integration))


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
