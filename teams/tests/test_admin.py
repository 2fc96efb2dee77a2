import pytest
from django.urls import reverse

from teams.models import Membership, SubteamMembership

from .factories import make_member, make_subteam, make_superuser, make_user

pytestmark = pytest.mark.django_db


def change_url(obj):
    return reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])


def test_admin_index_member_redirected(client, two_teams):
    client.force_login(two_teams.member_a)

    response = client.get(reverse("admin:index"))

    assert response.status_code == 302
    assert reverse("admin:login") in response.url


def test_admin_index_staff_without_team_sees_no_apps(client, two_teams):
    client.force_login(make_user(is_staff=True))

    response = client.get(reverse("admin:index"))

    assert response.status_code == 200
    assert response.context["app_list"] == []


def test_admin_index_team_admin_sees_apps(client, two_teams):
    client.force_login(two_teams.admin_a)

    response = client.get(reverse("admin:index"))

    app_labels = {app["app_label"] for app in response.context["app_list"]}
    assert {"teams", "leads"} <= app_labels
    assert "auth" not in app_labels


def test_team_list_scoped(client, two_teams):
    client.force_login(two_teams.admin_a)

    response = client.get(reverse("admin:teams_team_changelist"))

    assert response.status_code == 200
    assert list(response.context["cl"].result_list) == [two_teams.team_a]


def test_team_list_superuser_sees_all(client, two_teams):
    client.force_login(make_superuser())

    response = client.get(reverse("admin:teams_team_changelist"))

    assert set(response.context["cl"].result_list) == {two_teams.team_a, two_teams.team_b}


def test_team_change_own_team(client, two_teams):
    client.force_login(two_teams.admin_a)

    response = client.get(change_url(two_teams.team_a))

    assert response.status_code == 200
    assert b"member_a" in response.content


def test_team_change_other_team_404(client, two_teams):
    client.force_login(two_teams.admin_a)

    response = client.get(change_url(two_teams.team_b))

    assert response.status_code == 404


def test_team_add_superuser_only(client, two_teams):
    client.force_login(two_teams.admin_a)

    response = client.get(reverse("admin:teams_team_add"))

    assert response.status_code == 403


def test_team_delete_superuser_only(client, two_teams):
    client.force_login(two_teams.admin_a)

    response = client.get(reverse("admin:teams_team_delete", args=[two_teams.team_a.pk]))

    assert response.status_code == 403


def test_membership_list_scoped(client, two_teams):
    client.force_login(two_teams.admin_a)

    response = client.get(reverse("admin:teams_membership_changelist"))

    teams = {membership.team for membership in response.context["cl"].result_list}
    assert teams == {two_teams.team_a}


def test_membership_change_other_team_404(client, two_teams):
    membership_b = Membership.objects.get(user=two_teams.member_b)
    client.force_login(two_teams.admin_a)

    response = client.get(change_url(membership_b))

    assert response.status_code == 404


def test_membership_user_choices_scoped(client, two_teams):
    client.force_login(two_teams.admin_a)

    response = client.get(reverse("admin:teams_membership_add"))

    form = response.context["adminform"].form
    assert set(form.fields["team"].queryset) == {two_teams.team_a}
    assert set(form.fields["user"].queryset) == {two_teams.admin_a, two_teams.member_a}


def test_membership_add_to_other_team_rejected(client, two_teams):
    client.force_login(two_teams.admin_a)

    response = client.post(
        reverse("admin:teams_membership_add"),
        {"team": two_teams.team_b.pk, "user": two_teams.member_a.pk, "role": "member"},
    )

    assert response.status_code == 200
    assert "team" in response.context["adminform"].form.errors
    assert not Membership.objects.filter(team=two_teams.team_b, user=two_teams.member_a).exists()


def test_membership_role_change_grants_staff(client, two_teams):
    membership = Membership.objects.get(user=two_teams.member_a)
    client.force_login(two_teams.admin_a)

    response = client.post(change_url(membership), {"role": "admin"})

    assert response.status_code == 302
    two_teams.member_a.refresh_from_db()
    assert two_teams.member_a.is_staff


def test_team_inline_adds_admin_with_staff(client, two_teams):
    team_a = two_teams.team_a
    newcomer = make_user()
    make_member(two_teams.team_b, newcomer)
    # The newcomer must share a team with the admin to be a choice, so the superuser adds them.
    client.force_login(make_superuser())
    memberships = list(team_a.memberships.order_by("pk"))
    data = {
        "name": team_a.name,
        "default_phone_region": "US",
        "memberships-TOTAL_FORMS": str(len(memberships) + 1),
        "memberships-INITIAL_FORMS": str(len(memberships)),
        "subteams-TOTAL_FORMS": "0",
        "subteams-INITIAL_FORMS": "0",
    }
    for index, membership in enumerate(memberships):
        data[f"memberships-{index}-id"] = str(membership.pk)
        data[f"memberships-{index}-team"] = str(team_a.pk)
        data[f"memberships-{index}-user"] = str(membership.user_id)
        data[f"memberships-{index}-role"] = membership.role
    new_index = len(memberships)
    data[f"memberships-{new_index}-team"] = str(team_a.pk)
    data[f"memberships-{new_index}-user"] = str(newcomer.pk)
    data[f"memberships-{new_index}-role"] = "admin"

    response = client.post(change_url(team_a), data)

    assert response.status_code == 302
    assert Membership.objects.get(team=team_a, user=newcomer).role == "admin"
    newcomer.refresh_from_db()
    assert newcomer.is_staff


def test_subteam_inline_rejects_non_member(client, two_teams):
    subteam_a = make_subteam(two_teams.team_a, "North")
    # The superuser's user choices include everyone, so the team check must reject member_b.
    client.force_login(make_superuser())
    data = {
        "team": str(two_teams.team_a.pk),
        "name": "North",
        "memberships-TOTAL_FORMS": "1",
        "memberships-INITIAL_FORMS": "0",
        "memberships-0-subteam": str(subteam_a.pk),
        "memberships-0-user": str(two_teams.member_b.pk),
    }

    response = client.post(change_url(subteam_a), data)

    assert response.status_code == 200
    assert b"is not a member of team Team A" in response.content
    assert not SubteamMembership.objects.filter(subteam=subteam_a).exists()


def test_subteam_list_scoped(client, two_teams):
    subteam_a = make_subteam(two_teams.team_a)
    make_subteam(two_teams.team_b)
    client.force_login(two_teams.admin_a)

    response = client.get(reverse("admin:teams_subteam_changelist"))

    assert list(response.context["cl"].result_list) == [subteam_a]


def test_subteam_inline_adds_member(client, two_teams):
    subteam_a = make_subteam(two_teams.team_a, "North")
    client.force_login(two_teams.admin_a)
    data = {
        "team": str(two_teams.team_a.pk),
        "name": "North",
        "memberships-TOTAL_FORMS": "1",
        "memberships-INITIAL_FORMS": "0",
        "memberships-0-subteam": str(subteam_a.pk),
        "memberships-0-user": str(two_teams.member_a.pk),
        "memberships-0-is_admin": "on",
    }

    response = client.post(change_url(subteam_a), data)

    assert response.status_code == 302
    assert SubteamMembership.objects.get(subteam=subteam_a).user == two_teams.member_a


@pytest.mark.parametrize(
    "url_name",
    [
        "admin:teams_team_changelist",
        "admin:teams_team_add",
        "admin:teams_subteam_changelist",
        "admin:teams_subteam_add",
        "admin:teams_membership_changelist",
        "admin:teams_membership_add",
        "admin:leads_lead_changelist",
        "admin:leads_lead_add",
    ],
)
def test_admin_pages_answer_200(client, two_teams, url_name):
    client.force_login(make_superuser())

    response = client.get(reverse(url_name))

    assert response.status_code == 200


@pytest.mark.parametrize(
    "url_name",
    [
        "admin:teams_subteam_add",
        "admin:teams_membership_add",
        "admin:leads_lead_add",
    ],
)
def test_admin_add_pages_for_team_admin(client, two_teams, url_name):
    client.force_login(two_teams.admin_a)

    response = client.get(reverse(url_name))

    assert response.status_code == 200


@pytest.mark.parametrize("url", ["/admin/teams/subteam/", "/admin/teams/membership/"])
def test_team_filter_lists_own_teams_only(client, url):
    from teams.tests.factories import make_admin, make_team

    mine = make_team("Filter Mine")
    make_team("Filter Hidden")
    client.force_login(make_admin(mine))
    from teams.tests.factories import make_subteam

    make_subteam(mine)
    page = client.get(url)
    assert page.status_code == 200
    assert "Filter Hidden" not in page.content.decode()
