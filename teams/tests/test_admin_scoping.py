import pytest
from django.contrib import admin
from django.test import RequestFactory

from integrations.models import Integration, SyncLog
from teams.admin_scoping import TeamScopedAdminMixin

pytestmark = pytest.mark.django_db


class SyncLogTestAdmin(TeamScopedAdminMixin, admin.ModelAdmin):
    team_field = "lead__team"


def make_sync_log(lead):
    integration, _ = Integration.objects.get_or_create(
        team=lead.team, subteam=None, defaults={"org_url": "https://example.crm.dynamics.com"}
    )
    return SyncLog.objects.create(
        integration=integration, lead=lead, outcome=SyncLog.Outcome.CREATED
    )


def admin_request(user):
    request = RequestFactory().get("/admin/")
    request.user = user
    return request


def test_choices_follow_team_foreign_key(two_teams):
    model_admin = SyncLogTestAdmin(SyncLog, admin.site)
    lead_field = SyncLog._meta.get_field("lead")

    form_field = model_admin.formfield_for_foreignkey(
        lead_field, admin_request(two_teams.admin_a)
    )

    assert set(form_field.queryset) == {two_teams.lead_a}


def test_choices_unscoped_for_superuser(two_teams, django_user_model):
    model_admin = SyncLogTestAdmin(SyncLog, admin.site)
    lead_field = SyncLog._meta.get_field("lead")
    superuser = django_user_model.objects.create_superuser("root", "root@example.com", "pw")

    form_field = model_admin.formfield_for_foreignkey(lead_field, admin_request(superuser))

    assert set(form_field.queryset) == {two_teams.lead_a, two_teams.lead_b}


def test_queryset_follows_team_field(two_teams):
    model_admin = SyncLogTestAdmin(SyncLog, admin.site)
    log_a = make_sync_log(two_teams.lead_a)
    make_sync_log(two_teams.lead_b)

    queryset = model_admin.get_queryset(admin_request(two_teams.admin_a))

    assert list(queryset) == [log_a]


def test_object_permission_follows_team_field(two_teams):
    model_admin = SyncLogTestAdmin(SyncLog, admin.site)
    request = admin_request(two_teams.admin_a)

    assert model_admin.has_change_permission(request, make_sync_log(two_teams.lead_a))
    assert not model_admin.has_change_permission(request, make_sync_log(two_teams.lead_b))
