"""Pages of manual syncs: a sync job's progress, and an integration's sync log with its
retry buttons.

Views parse input, check access (404 for another team's rows, 403 for rows of the
user's team that their role does not cover) and call one service in jobs.py.
"""

import logging

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.html import format_html
from django.views.decorators.http import require_GET, require_POST

from leads.models import Lead

from . import jobs, permissions
from .models import Integration, SyncJob, SyncLog

logger = logging.getLogger(__name__)

LOG_PAGE_SIZE = 50


def _job_for(user, job_id):
    job = get_object_or_404(SyncJob.objects.select_related("integration__team"), pk=job_id)
    if not permissions.can_see_job(user, job):
        raise Http404("No sync job with that id in your teams.")
    if not permissions.can_view_job(user, job):
        raise PermissionDenied("Only the user who started a sync job and team admins can "
                               "see it.")
    return job


def _integration_for(user, integration_id):
    integration = get_object_or_404(Integration.objects.select_related("team", "subteam"),
                                    pk=integration_id)
    if not permissions.can_see_integration(user, integration):
        raise Http404("No integration with that id in your teams.")
    if not permissions.can_view_sync_log(user, integration):
        raise PermissionDenied("Only team admins, and subteam admins for their subteam's "
                               "integration, can see the sync log.")
    return integration


def report_sync_start(request, started):
    """Show the outcome of a manual sync request as messages; return the page to go to.

    Returns the job page when exactly one job started, else None.
    """
    if started.queued:
        messages.success(request, f"Queued {len(started.queued)} lead(s) for a sync to "
                                  f"Dynamics.")
    for lead_id, reason in sorted(started.refused.items()):
        messages.warning(request, f"Lead {lead_id} was not queued: {reason}")
    if started.job is not None:
        return reverse("sync:job", args=[started.job.pk])
    for job in started.jobs:
        messages.info(request, format_html('<a href="{}">Sync job {}</a> for {}',
                                           reverse("sync:job", args=[job.pk]), job.pk,
                                           job.integration))
    return None


@login_required
@require_GET
def job_detail(request, job_id):
    job = _job_for(request.user, job_id)
    progress = jobs.job_progress(job)
    return render(request, "integrations/sync_job.html", {
        "title": f"Sync job {job.pk}",
        "job": job,
        "progress": progress,
    })


@login_required
@require_GET
def job_progress(request, job_id):
    """Return the job's counts as JSON, for the progress bar on the job page."""
    job = _job_for(request.user, job_id)
    progress = jobs.job_progress(job)
    return JsonResponse({"id": job.pk, "status": job.status, **progress.as_dict()})


@login_required
@require_GET
def sync_log(request, integration_id):
    integration = _integration_for(request.user, integration_id)
    outcome = request.GET.get("outcome", "")
    if outcome not in SyncLog.Outcome.values:
        outcome = ""
    page = Paginator(jobs.sync_log_entries(integration, outcome), LOG_PAGE_SIZE).get_page(
        request.GET.get("page"))
    return render(request, "integrations/sync_log.html", {
        "title": f"Sync log: {integration}",
        "integration": integration,
        "page": page,
        "outcome": outcome,
        "outcomes": SyncLog.Outcome.choices,
        "failed_count": len(jobs.failed_leads_of(integration)),
    })


@login_required
@require_POST
def retry_lead(request, integration_id):
    """Sync one lead of the sync log again; the lead id comes in the POST field `lead`."""
    integration = _integration_for(request.user, integration_id)
    try:
        lead_id = int(request.POST.get("lead", ""))
    except ValueError:
        messages.error(request, "Invalid or missing lead id; use the Retry button of a row.")
        return redirect("sync:log", integration.pk)
    lead = get_object_or_404(Lead, pk=lead_id, team_id=integration.team_id)
    started = jobs.start_sync(request.user, [lead])
    return redirect(report_sync_start(request, started) or reverse("sync:log",
                                                                   args=[integration.pk]))


@login_required
@require_POST
def retry_failed(request, integration_id):
    integration = _integration_for(request.user, integration_id)
    started = jobs.retry_failed(request.user, integration)
    if not started.queued and not started.refused:
        messages.info(request, "No failed leads to retry.")
    return redirect(report_sync_start(request, started) or reverse("sync:log",
                                                                   args=[integration.pk]))
