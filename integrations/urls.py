from django.urls import path

from . import views

app_name = "integrations"

urlpatterns = [
    path("settings/", views.sync_settings, name="settings"),
    path("teams/<int:team_id>/connect/", views.connect, name="connect"),
    path("teams/<int:team_id>/application-user/", views.team_application_user,
         name="team-application-user"),
    path("callback/", views.callback, name="callback"),
    path("subteam-integrations/add/", views.add_subteam_integration,
         name="add-subteam-integration"),
    path("<int:integration_id>/settings/", views.integration_settings,
         name="integration-settings"),
    path("<int:integration_id>/connect/", views.connect_integration,
         name="connect-integration"),
    path("<int:integration_id>/environments/", views.choose_environment,
         name="choose-environment"),
    path("<int:integration_id>/application-user/", views.application_user,
         name="application-user"),
    path("<int:integration_id>/disconnect/", views.disconnect, name="disconnect"),
    path("<int:integration_id>/test-connection/", views.check_connection,
         name="test-connection"),
    path("<int:integration_id>/permissions/", views.permissions, name="permissions"),
    path("leads/<int:lead_id>/preview/", views.preview, name="preview"),
]
