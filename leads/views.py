"""The My leads page: a member's own leads, their sync state and a Sync button each."""

import logging

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from integrations import jobs
from integrations.permissions import SyncPermissions

from .selectors import leads_captured_by

logger = logging.getLogger(__name__)

PAGE_SIZE = 50
# The admin's login page accepts staff accounts only, and most members are not staff.
LOGIN_URL = "lead_pages:login"


@login_required(login_url=LOGIN_URL)
@require_GET
def my_leads(request):
    leads = leads_captured_by(request.user).select_related("team")
    page = Paginator(leads, PAGE_SIZE).get_page(request.GET.get("page"))
    permissions = SyncPermissions(request.user)
    rows = [{"lead": lead, "sync": permissions.check(lead)} for lead in page]
    return render(request, "leads/my_leads.html", {
        "title": "My leads",
        "page": page,
        "rows": rows,
    })


@login_required(login_url=LOGIN_URL)
@require_POST
def sync_my_lead(request, lead_id):
    lead = get_object_or_404(leads_captured_by(request.user), pk=lead_id)
    started = jobs.start_sync(request.user, [lead])
    if lead.pk in started.refused:
        logger.warning("User %s may not sync lead %s: %s", request.user.pk, lead.pk,
                       started.refused[lead.pk])
        messages.error(request, f"{lead} was not queued: {started.refused[lead.pk]}")
    else:
        messages.success(request, f"{lead} is queued for a sync to Dynamics.")
    return redirect("lead_pages:my-leads")
