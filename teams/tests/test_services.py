import pytest
from django.core.exceptions import ValidationError

from teams.models import Membership, SubteamMembership
from teams.services import add_member, add_subteam_member, create_team

from .factories import make_member, make_subteam, make_team, make_user

pytestmark = pytest.mark.django_db


def test_create_team_saves_team():
    team = create_team("  Field Sales ")

    assert team.pk is not None
    assert team.name == "Field Sales"
    assert team.default_phone_region == "US"


def test_create_team_with_admin():
    user = make_user()

    team = create_team("Events", admin=user)

    assert Membership.objects.get(team=team, user=user).role == Membership.Role.ADMIN
    user.refresh_from_db()
    assert user.is_staff


def test_create_team_duplicate_name():
    create_team("Events")

    with pytest.raises(ValidationError):
        create_team("Events")


def test_create_team_empty_name():
    with pytest.raises(ValidationError):
        create_team("  ")


def test_add_member_as_member():
    team = make_team()
    user = make_user()

    membership = add_member(team, user)

    assert membership.role == Membership.Role.MEMBER
    user.refresh_from_db()
    assert not user.is_staff


def test_add_member_as_admin_grants_staff():
    team = make_team()
    user = make_user()

    add_member(team, user, Membership.Role.ADMIN)

    user.refresh_from_db()
    assert user.is_staff


def test_add_member_changes_role():
    team = make_team()
    user = make_member(team)

    add_member(team, user, Membership.Role.ADMIN)

    assert Membership.objects.filter(team=team, user=user).count() == 1
    assert Membership.objects.get(team=team, user=user).role == Membership.Role.ADMIN


def test_add_member_invalid_role():
    with pytest.raises(ValidationError, match="Invalid role 'owner'"):
        add_member(make_team(), make_user(), "owner")


def test_add_subteam_member_of_team():
    team = make_team()
    subteam = make_subteam(team)
    user = make_member(team)

    subteam_membership = add_subteam_member(subteam, user, is_admin=True)

    assert subteam_membership.is_admin
    assert subteam_membership.subteam == subteam


def test_add_subteam_member_updates_flag():
    team = make_team()
    subteam = make_subteam(team)
    user = make_member(team)
    add_subteam_member(subteam, user, is_admin=True)

    add_subteam_member(subteam, user, is_admin=False)

    assert SubteamMembership.objects.filter(subteam=subteam, user=user).count() == 1
    assert not SubteamMembership.objects.get(subteam=subteam, user=user).is_admin


def test_add_subteam_member_outside_team():
    team = make_team()
    other_team = make_team()
    subteam = make_subteam(team)
    user = make_member(other_team)

    with pytest.raises(ValidationError, match="not a member of team"):
        add_subteam_member(subteam, user)

    assert not SubteamMembership.objects.filter(user=user).exists()
