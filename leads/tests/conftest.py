import pytest

from teams.tests.factories import TwoTeams


@pytest.fixture(autouse=True)
def fast_password_hasher(settings):
    # The default PBKDF2 hasher is slow by design. MD5 keeps creating test users fast.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def two_teams(db):
    return TwoTeams()
