import pytest
from django.contrib.auth.models import AnonymousUser

from teams.selectors import (
    is_team_admin,
    is_team_member,
    subteams_administered_by,
    team_ids_administered_by,
    teams_administered_by,
    teams_of_member,
)
from teams.services import add_subteam_member

from .factories import make_admin, make_member, make_subteam, make_superuser, make_team, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def teams():
    """Two teams: `admin` administers A and is a plain member of B."""
    team_a = make_team("A")
    team_b = make_team("B")
    admin = make_admin(team_a)
    make_member(team_b, admin)
    return team_a, team_b, admin


def test_teams_administered_by_admin(teams):
    team_a, team_b, admin = teams

    assert list(teams_administered_by(admin)) == [team_a]


def test_teams_administered_by_superuser(teams):
    team_a, team_b, _ = teams

    assert set(teams_administered_by(make_superuser())) == {team_a, team_b}


def test_teams_administered_by_member(teams):
    team_a, _, _ = teams
    member = make_member(team_a)

    assert not teams_administered_by(member).exists()


def test_teams_administered_by_inactive(teams):
    _, _, admin = teams
    admin.is_active = False
    admin.save()

    assert not teams_administered_by(admin).exists()


def test_teams_administered_by_anonymous(teams):
    assert not teams_administered_by(AnonymousUser()).exists()


def test_team_ids_administered_by(teams):
    team_a, _, admin = teams

    assert team_ids_administered_by(admin) == {team_a.pk}


def test_teams_of_member(teams):
    team_a, team_b, admin = teams

    assert set(teams_of_member(admin)) == {team_a, team_b}


def test_teams_of_member_superuser_needs_membership(teams):
    assert not teams_of_member(make_superuser()).exists()


def test_is_team_admin(teams):
    team_a, team_b, admin = teams

    assert is_team_admin(admin, team_a)
    assert not is_team_admin(admin, team_b)
    assert is_team_admin(make_superuser(), team_b)


def test_is_team_member(teams):
    team_a, team_b, admin = teams

    assert is_team_member(admin, team_b)
    assert not is_team_member(make_user(), team_a)


def test_subteams_administered_by_team_admin(teams):
    team_a, team_b, admin = teams
    subteam_a = make_subteam(team_a)
    make_subteam(team_b)

    assert list(subteams_administered_by(admin)) == [subteam_a]


def test_subteams_administered_by_subteam_admin(teams):
    _, team_b, admin = teams
    subteam_b = make_subteam(team_b)
    other_subteam_b = make_subteam(team_b)
    add_subteam_member(subteam_b, admin, is_admin=True)
    add_subteam_member(other_subteam_b, admin, is_admin=False)

    administered = set(subteams_administered_by(admin))

    assert subteam_b in administered
    assert other_subteam_b not in administered


def test_subteams_administered_by_member(teams):
    team_a, _, _ = teams
    make_subteam(team_a)
    member = make_member(team_a)

    assert not subteams_administered_by(member).exists()
