"""Fixtures for the sandbox conformance tests: one running sandbox and signed-in users."""

import uuid
from urllib.parse import parse_qsl, urlsplit

import msal
import pytest
import requests

from dynamics_sandbox.testing import sign_in_with_form, start_sandbox

REDIRECT_URI = "http://127.0.0.1:8000/integrations/callback/"
ADMIN = "alex.admin@contoso.example"
SALES = "sam.sales@contoso.example"
READER = "riley.reader@contoso.example"


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory):
    running = start_sandbox(tmp_path_factory.mktemp("sandbox"))
    yield running
    running.stop()


def make_session(ca_bundle):
    """Return a requests session that trusts only the sandbox CA and ignores the environment."""
    session = requests.Session()
    session.trust_env = False
    session.verify = ca_bundle
    return session


def make_msal_app(sandbox, session, client_secret=None):
    return msal.ConfidentialClientApplication(
        sandbox.client_id,
        client_credential=client_secret or sandbox.client_secret,
        authority=sandbox.authority,
        instance_discovery=False,
        http_client=session,
    )


def sign_in(sandbox, app, email):
    """Run MSAL's auth code flow through the sign-in form and return MSAL's result."""
    flow = app.initiate_auth_code_flow(
        scopes=[sandbox.base_url + "/.default"], redirect_uri=REDIRECT_URI
    )
    location = sign_in_with_form(flow["auth_uri"], email, sandbox.ca_bundle)
    return app.acquire_token_by_auth_code_flow(flow, dict(parse_qsl(urlsplit(location).query)))


@pytest.fixture(scope="session")
def tokens(sandbox):
    """Access tokens of the three seeded users, by email, from real MSAL sign-ins."""
    session = make_session(sandbox.ca_bundle)
    result = {}
    for email in (ADMIN, SALES, READER):
        app = make_msal_app(sandbox, session)
        result[email] = sign_in(sandbox, app, email)["access_token"]
    return result


class Api:
    """A Web API client for one user, with the headers that Dataverse clients send."""

    def __init__(self, sandbox, token):
        self.sandbox = sandbox
        self.root = sandbox.base_url + "/api/data/v9.2/"
        self.session = make_session(sandbox.ca_bundle)
        self.session.headers.update({
            "Accept": "application/json",
            "OData-MaxVersion": "4.0",
            "OData-Version": "4.0",
        })
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def request(self, method, path, **kwargs):
        kwargs.setdefault("timeout", 10)
        return self.session.request(method, self.root + path, **kwargs)

    def get(self, path, **kwargs):
        return self.request("GET", path, **kwargs)

    def post(self, path, **kwargs):
        return self.request("POST", path, **kwargs)

    def patch(self, path, **kwargs):
        return self.request("PATCH", path, **kwargs)

    def delete(self, path, **kwargs):
        return self.request("DELETE", path, **kwargs)

    def create(self, entity_set, body, **kwargs):
        """Create a record with return=representation and return its JSON."""
        headers = {"Prefer": "return=representation", **kwargs.pop("headers", {})}
        response = self.post(entity_set, json=body, headers=headers, **kwargs)
        assert response.status_code == 201, response.text
        return response.json()


@pytest.fixture(scope="session")
def admin_api(sandbox, tokens):
    return Api(sandbox, tokens[ADMIN])


@pytest.fixture(scope="session")
def sales_api(sandbox, tokens):
    return Api(sandbox, tokens[SALES])


@pytest.fixture(scope="session")
def reader_api(sandbox, tokens):
    return Api(sandbox, tokens[READER])


@pytest.fixture
def email():
    """A unique email address, so tests that share the sandbox do not see each other."""
    return f"lead.{uuid.uuid4().hex[:12]}@example.org"


def sign_in_for(sandbox, app, email, resource):
    """Run MSAL's auth code flow for `{resource}/.default` and return MSAL's result."""
    flow = app.initiate_auth_code_flow(scopes=[resource + "/.default"], redirect_uri=REDIRECT_URI)
    location = sign_in_with_form(flow["auth_uri"], email, sandbox.ca_bundle)
    return app.acquire_token_by_auth_code_flow(flow, dict(parse_qsl(urlsplit(location).query)))


def environment_api(sandbox, unique_name, token):
    """Return an Api client for the Web API of the environment `unique_name`."""
    api = Api(sandbox, token)
    api.root = sandbox.environment(unique_name).url + "/api/data/v9.2/"
    return api


def token_endpoint(sandbox, tenant="sandbox-tenant"):
    return f"{sandbox.base_url}/{tenant}/oauth2/v2.0/token"
