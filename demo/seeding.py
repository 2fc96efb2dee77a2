"""The demo team: an admin and two members, with passwords and API tokens.

The admin's and Sam's emails match users seeded in the Dynamics sandbox, so leads they
capture are owned by their own Dynamics user; Jordan has no Dynamics user, so Jordan's
leads are owned by the integration user.
"""

from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.db import transaction
from rest_framework.authtoken.models import Token

from teams.models import Membership, Team
from teams.services import add_member

DEMO_TEAM = "Contoso Events"
DEMO_PEOPLE = (
    # username, email, first name, last name, role, password
    ("alex", "alex.admin@contoso.example", "Alex", "Admin", Membership.Role.ADMIN, "demo-alex"),
    ("sam", "sam.sales@contoso.example", "Sam", "Sales", Membership.Role.MEMBER, "demo-sam"),
    ("jordan", "jordan.rep@contoso.example", "Jordan", "Rep", Membership.Role.MEMBER,
     "demo-jordan"),
)


@dataclass
class DemoLogin:
    username: str
    email: str
    role: str
    password: str
    api_token: str


@transaction.atomic
def seed_demo_team():
    """Create or reset the demo team and return its logins. Safe to run again."""
    team, _ = Team.objects.get_or_create(name=DEMO_TEAM)
    User = get_user_model()
    logins = []
    for username, email, first_name, last_name, role, password in DEMO_PEOPLE:
        user, _ = User.objects.get_or_create(username=username)
        user.email = email
        user.first_name = first_name
        user.last_name = last_name
        # Demo passwords are fixed and printed: this team exists for local trials only.
        user.set_password(password)
        user.save()
        if not Membership.objects.filter(team=team, user=user).exists():
            add_member(team, user, role)
        token, _ = Token.objects.get_or_create(user=user)
        logins.append(DemoLogin(username, email, role, password, token.key))
    return team, logins
