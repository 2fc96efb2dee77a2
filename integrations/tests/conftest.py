"""Fixtures that run the integration against a real sandbox over HTTPS."""

import uuid
from urllib.parse import urlsplit

import pytest
from django.urls import reverse

from dynamics_sandbox.testing import sign_in_with_form, start_sandbox
from integrations.models import Integration
from teams.tests.factories import make_admin, make_member, make_team

# The sandbox accepts only loopback redirect URIs, as Entra ID does for http ones.
REDIRECT_URI = "http://127.0.0.1:8000/integrations/callback/"

# Users seeded in the sandbox.
SANDBOX_ADMIN = "alex.admin@contoso.example"
SANDBOX_SALES = "sam.sales@contoso.example"
SANDBOX_READER = "riley.reader@contoso.example"


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory):
    running = start_sandbox(tmp_path_factory.mktemp("sandbox"))
    yield running
    running.stop()


def point_settings_at(settings, running):
    """Point the product's Dynamics settings at a running sandbox.

    Sign-in goes through the multi-tenant `organizations` authority, as in production.
    """
    settings.DYNAMICS_AUTHORITY = f"{running.base_url}/organizations"
    settings.DYNAMICS_ORG_URL = running.base_url
    settings.DYNAMICS_DISCOVERY_URL = running.discovery_url
    settings.DYNAMICS_CA_BUNDLE = str(running.ca_bundle)
    settings.DYNAMICS_REDIRECT_URI = REDIRECT_URI
    return settings


@pytest.fixture
def dynamics_settings(settings, sandbox):
    return point_settings_at(settings, sandbox)


def unique_email(name="lead"):
    return f"{name}.{uuid.uuid4().hex[:10]}@example.org"


def unique_digits(count):
    """Return `count` random digits, so phone numbers differ between tests."""
    return "".join(str(uuid.uuid4().int)[-count:])


def connect_through_sign_in(client, team, admin, sandbox, dynamics_email=SANDBOX_ADMIN):
    """Connect `team` the way an admin does: Connect, the sign-in form, the callback.

    Returns the page shown after the callback.
    """
    client.force_login(admin)
    response = client.post(reverse("integrations:connect", args=[team.pk]))
    assert response.status_code == 302, response.content[:500]
    callback_url = sign_in_with_form(response["Location"], dynamics_email, sandbox.ca_bundle)
    parts = urlsplit(callback_url)
    return client.get(f"{parts.path}?{parts.query}", follow=True)


class ConnectedTeam:
    """A team with an admin, a member and an integration connected to the sandbox."""

    def __init__(self, client, sandbox, dynamics_email=SANDBOX_ADMIN):
        self.team = make_team()
        self.admin = make_admin(self.team)
        self.member = make_member(self.team)
        self.page = connect_through_sign_in(client, self.team, self.admin, sandbox,
                                            dynamics_email)
        self.integration = Integration.objects.get(team=self.team, subteam=None)


@pytest.fixture
def connected_team(client, sandbox, dynamics_settings, db):
    return ConnectedTeam(client, sandbox)
