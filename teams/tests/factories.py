"""Small builders for users, teams and leads in tests."""

import itertools

from django.contrib.auth import get_user_model

from leads.models import Lead
from teams.models import Membership, Subteam, Team
from teams.services import add_member

_numbers = itertools.count(1)

PASSWORD = "test-password-1"


def make_user(username=None, **fields):
    username = username or f"user{next(_numbers)}"
    return get_user_model().objects.create_user(
        username=username, email=f"{username}@example.com", password=PASSWORD, **fields
    )


def make_superuser(username=None):
    username = username or f"root{next(_numbers)}"
    return get_user_model().objects.create_superuser(
        username=username, email=f"{username}@example.com", password=PASSWORD
    )


def make_team(name=None, **fields):
    return Team.objects.create(name=name or f"Team {next(_numbers)}", **fields)


def make_subteam(team, name=None):
    return Subteam.objects.create(team=team, name=name or f"Subteam {next(_numbers)}")


def make_member(team, user=None, role=Membership.Role.MEMBER):
    user = user or make_user()
    add_member(team, user, role)
    return user


def make_admin(team, user=None):
    return make_member(team, user, Membership.Role.ADMIN)


def make_lead(team, captured_by, **fields):
    fields.setdefault("first_name", "Ada")
    fields.setdefault("last_name", f"Lovelace {next(_numbers)}")
    return Lead.objects.create(team=team, captured_by=captured_by, **fields)


class TwoTeams:
    """Teams A and B, each with an admin, a member and one lead by that member."""

    def __init__(self):
        self.team_a = make_team("Team A")
        self.team_b = make_team("Team B")
        self.admin_a = make_admin(self.team_a, make_user("admin_a"))
        self.admin_b = make_admin(self.team_b, make_user("admin_b"))
        self.member_a = make_member(self.team_a, make_user("member_a"))
        self.member_b = make_member(self.team_b, make_user("member_b"))
        self.lead_a = make_lead(self.team_a, self.member_a, company="Acme A")
        self.lead_b = make_lead(self.team_b, self.member_b, company="Bolt B")
