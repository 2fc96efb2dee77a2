"""Pages of leads for signed-in users, under /leads/."""

from django.urls import path

from . import views

app_name = "lead_pages"

urlpatterns = [
    path("mine/", views.my_leads, name="my-leads"),
    path("mine/<int:lead_id>/sync/", views.sync_my_lead, name="sync-my-lead"),
]
