"""URLs of manual syncs, sync jobs and the sync log, under /integrations/sync/."""

from django.urls import path

from . import sync_views

app_name = "sync"

urlpatterns = [
    path("jobs/<int:job_id>/", sync_views.job_detail, name="job"),
    path("jobs/<int:job_id>/progress/", sync_views.job_progress, name="job-progress"),
    path("log/<int:integration_id>/", sync_views.sync_log, name="log"),
    path("log/<int:integration_id>/retry/", sync_views.retry_lead, name="retry"),
    path("log/<int:integration_id>/retry-failed/", sync_views.retry_failed,
         name="retry-failed"),
]
