from django.urls import path

from . import views

app_name = "integrations"

urlpatterns = [
    path("settings/", views.sync_settings, name="settings"),
    path("teams/<int:team_id>/connect/", views.connect, name="connect"),
    path("callback/", views.callback, name="callback"),
    path("<int:integration_id>/settings/", views.update_settings, name="update-settings"),
    path("leads/<int:lead_id>/preview/", views.preview, name="preview"),
]
