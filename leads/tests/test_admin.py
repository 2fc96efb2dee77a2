import pytest
from django.urls import reverse

from leads.admin import LeadAdminForm
from leads.models import Lead
from teams.tests.factories import make_superuser

pytestmark = pytest.mark.django_db


def lead_form(team, captured_by, **fields):
    data = {"team": str(team.pk), "captured_by": str(captured_by.pk), "first_name": "Grace"}
    data.update(fields)
    return data


def test_lead_list_scoped(client, two_teams):
    client.force_login(two_teams.admin_a)

    response = client.get(reverse("admin:leads_lead_changelist"))

    assert response.status_code == 200
    assert list(response.context["cl"].result_list) == [two_teams.lead_a]
    assert b"Acme A" in response.content
    assert b"Bolt B" not in response.content


def test_lead_list_superuser_sees_all(client, two_teams):
    client.force_login(make_superuser())

    response = client.get(reverse("admin:leads_lead_changelist"))

    assert set(response.context["cl"].result_list) == {two_teams.lead_a, two_teams.lead_b}


def test_lead_list_filters_and_search(client, two_teams):
    client.force_login(two_teams.admin_a)

    response = client.get(
        reverse("admin:leads_lead_changelist"), {"sync_status__exact": "pending", "q": "Acme"}
    )

    assert list(response.context["cl"].result_list) == [two_teams.lead_a]


def test_lead_list_member_redirected(client, two_teams):
    client.force_login(two_teams.member_a)

    response = client.get(reverse("admin:leads_lead_changelist"))

    assert response.status_code == 302


def test_lead_change_other_team_404(client, two_teams):
    client.force_login(two_teams.admin_a)

    response = client.get(reverse("admin:leads_lead_change", args=[two_teams.lead_b.pk]))

    assert response.status_code == 404


def test_lead_delete_other_team_404(client, two_teams):
    client.force_login(two_teams.admin_a)

    response = client.post(
        reverse("admin:leads_lead_delete", args=[two_teams.lead_b.pk]), {"post": "yes"}
    )

    assert response.status_code == 404
    assert Lead.objects.filter(pk=two_teams.lead_b.pk).exists()


def test_lead_delete_own_team(client, two_teams):
    client.force_login(two_teams.admin_a)

    response = client.post(
        reverse("admin:leads_lead_delete", args=[two_teams.lead_a.pk]), {"post": "yes"}
    )

    assert response.status_code == 302
    assert not Lead.objects.filter(pk=two_teams.lead_a.pk).exists()


def test_lead_add_choices_scoped(client, two_teams):
    client.force_login(two_teams.admin_a)

    response = client.get(reverse("admin:leads_lead_add"))

    form = response.context["adminform"].form
    assert set(form.fields["team"].queryset) == {two_teams.team_a}
    assert set(form.fields["captured_by"].queryset) == {two_teams.admin_a, two_teams.member_a}


def test_lead_add_own_team(client, two_teams, monkeypatch):
    scheduled = []
    monkeypatch.setattr("leads.services.schedule_sync_for_new_lead", scheduled.append)
    client.force_login(two_teams.admin_a)

    response = client.post(
        reverse("admin:leads_lead_add"), lead_form(two_teams.team_a, two_teams.member_a)
    )

    assert response.status_code == 302
    lead = Lead.objects.get(first_name="Grace")
    assert lead.team == two_teams.team_a
    assert scheduled == [lead]


def test_lead_add_other_team_rejected(client, two_teams):
    client.force_login(two_teams.admin_a)

    response = client.post(
        reverse("admin:leads_lead_add"), lead_form(two_teams.team_b, two_teams.member_a)
    )

    assert response.status_code == 200
    assert "team" in response.context["adminform"].form.errors
    assert not Lead.objects.filter(first_name="Grace").exists()


def test_lead_add_capturer_outside_team(client, two_teams):
    client.force_login(make_superuser())

    response = client.post(
        reverse("admin:leads_lead_add"), lead_form(two_teams.team_a, two_teams.member_b)
    )

    assert response.status_code == 200
    assert "captured_by" in response.context["adminform"].form.errors


def test_lead_add_without_identity(client, two_teams):
    client.force_login(two_teams.admin_a)

    response = client.post(
        reverse("admin:leads_lead_add"),
        lead_form(two_teams.team_a, two_teams.member_a, first_name="", job_title="CTO"),
    )

    assert response.status_code == 200
    assert b"Enter at least one of" in response.content


def test_lead_change_keeps_sync_fields(client, two_teams):
    lead = two_teams.lead_a
    client.force_login(two_teams.admin_a)

    response = client.post(
        reverse("admin:leads_lead_change", args=[lead.pk]),
        {"first_name": "Grace", "sync_status": "synced", "dynamics_record_id": "forged"},
    )

    assert response.status_code == 302
    lead.refresh_from_db()
    assert lead.first_name == "Grace"
    assert lead.sync_status == Lead.SyncStatus.PENDING
    assert lead.dynamics_record_id == ""


def test_lead_change_keeps_worker_writes(client, two_teams, monkeypatch):
    lead = two_teams.lead_a
    client.force_login(two_teams.admin_a)
    clean = LeadAdminForm.clean

    def worker_syncs_meanwhile(form):
        # A worker finishes the lead's sync while the admin's save is on its way.
        Lead.objects.filter(pk=lead.pk).update(
            sync_status=Lead.SyncStatus.SYNCED, dynamics_record_id="rec-from-worker",
            sync_claim="")
        return clean(form)

    monkeypatch.setattr(LeadAdminForm, "clean", worker_syncs_meanwhile)
    response = client.post(reverse("admin:leads_lead_change", args=[lead.pk]),
                           {"first_name": "Grace", "email": lead.email})

    lead.refresh_from_db()
    assert response.status_code == 302
    assert lead.first_name == "Grace"
    assert lead.sync_status == Lead.SyncStatus.SYNCED
    assert lead.dynamics_record_id == "rec-from-worker"
