"""URLs of manual syncs, sync jobs and the sync log, under /integrations/sync/."""

from django.urls import path  # noqa: F401

app_name = "sync"

urlpatterns: list = []
