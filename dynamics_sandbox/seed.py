"""Fixed identities of the sandbox tenant: environments, apps, users, teams, roles, privileges.

The ids never change, so tests and demo data can name them.
"""

import uuid
from dataclasses import dataclass

TENANT_ID = "7d3e1f0a-5b2c-4c8d-9e6f-0a1b2c3d4e5f"
TENANT_NAME = "sandbox-tenant"
ORGANIZATION_ID = "0f8e2d4c-6b1a-4a39-8c57-3e9d1b2a4c60"
BUSINESS_UNIT_ID = "2b6c9e1d-4f3a-4b8c-9d2e-5a7f0c1b3e84"

ADMIN_ROLE_ID = "00000000-0000-4000-8000-00000000c001"
SALESPERSON_ROLE_ID = "00000000-0000-4000-8000-00000000c002"
READER_ROLE_ID = "00000000-0000-4000-8000-00000000c003"

ALEX_ID = "00000000-0000-4000-8000-00000000a001"
SAM_ID = "00000000-0000-4000-8000-00000000a002"
RILEY_ID = "00000000-0000-4000-8000-00000000a003"
# The application user of APP_USER_CLIENT_ID, in both environments.
APP_USER_ID = "00000000-0000-4000-8000-00000000a004"


@dataclass(frozen=True)
class EnvironmentSeed:
    """A Dataverse environment (organization) of the tenant, as discovery lists it."""

    unique_name: str
    friendly_name: str
    url_name: str
    environment_id: str
    organization_id: str


CONTOSO_SALES = "contososales"
CONTOSO_EVENTS = "contosoevents"
# Contoso Sales is served at the sandbox's main URL and keeps the records of data folders
# created before the sandbox had a second environment.
ENVIRONMENTS = (
    EnvironmentSeed(
        unique_name=CONTOSO_SALES,
        friendly_name="Contoso Sales",
        url_name="contososales",
        environment_id="3b5e8f21-7c4d-4e9a-b1f0-6d2c8a4e9f13",
        organization_id=ORGANIZATION_ID,
    ),
    EnvironmentSeed(
        unique_name=CONTOSO_EVENTS,
        friendly_name="Contoso Events",
        url_name="contosoevents",
        environment_id="9a4c2e7f-1b3d-4f6a-8e5c-2d7b9f1a3c58",
        organization_id="5d1b7f3a-2e8c-4c6b-9a1d-7f4e2b8c6a95",
    ),
)
ENVIRONMENTS_BY_UNIQUE_NAME = {environment.unique_name: environment for environment in ENVIRONMENTS}

# Values that the Global Discovery Service reports for every sandbox environment.
# NOTE: the version and the datacenter id are made up in the format that real
# environments report, and they never change.
DATAVERSE_VERSION = "9.2.24121.00193"
REGION = "EMEA"
DATACENTER_ID = "e4c8b2a6-3f1d-4b7e-9c5a-1d8f6b2e4a70"
ENVIRONMENTS_LAST_UPDATED = "2026-01-05T08:00:00Z"


@dataclass(frozen=True)
class AppRegistration:
    """An app registration of the tenant that may use the client credentials grant."""

    client_id: str
    client_secret: str
    display_name: str
    # True when every client secret of the app has passed its end date.
    secret_expired: bool = False


# An app with an application user in both environments: a daemon that signs in with
# client credentials.
APP_USER_CLIENT_ID = "4f2a9c61-8d3e-4b57-a1c9-0e6b2d7f3a18"
APP_USER_CLIENT_SECRET = "sandbox-app-user-secret"
# The service principal's object id, which the application user records.
APP_USER_OBJECT_ID = "00000000-0000-4000-8000-00000000b004"
# An app whose only client secret has expired.
EXPIRED_APP_CLIENT_ID = "7b3d1e95-2c6a-4f08-9d4b-5a1e8c3f6d27"
EXPIRED_APP_CLIENT_SECRET = "sandbox-expired-app-secret"
# A registered app with no application user in either environment.
UNLICENSED_APP_CLIENT_ID = "c6e04a2b-9f17-4d3c-8b65-3e9a1f7d0c42"
UNLICENSED_APP_CLIENT_SECRET = "sandbox-unlicensed-app-secret"

APP_REGISTRATIONS = (
    AppRegistration(APP_USER_CLIENT_ID, APP_USER_CLIENT_SECRET, "Lead Sync Application"),
    AppRegistration(EXPIRED_APP_CLIENT_ID, EXPIRED_APP_CLIENT_SECRET, "Lead Sync Expired",
                    secret_expired=True),
    AppRegistration(UNLICENSED_APP_CLIENT_ID, UNLICENSED_APP_CLIENT_SECRET, "Lead Sync Unlicensed"),
)
APP_REGISTRATIONS_BY_CLIENT_ID = {app.client_id: app for app in APP_REGISTRATIONS}

# An owner team that records can be assigned to with "ownerid@odata.bind": "/teams(<id>)".
EVENT_SALES_TEAM_ID = "00000000-0000-4000-8000-00000000d001"

TEAMS = [
    {"teamid": EVENT_SALES_TEAM_ID, "name": "Event Sales Team", "teamtype": 0},
]

# Entities whose privileges the roles grant, by privilege name suffix.
_RECORD_ENTITIES = ("Lead", "Contact", "Account", "Note")
_ACTIONS = ("Create", "Read", "Write", "Delete", "Append", "AppendTo", "Assign", "Share")

_ALL_PRIVILEGES = [f"prv{action}{entity}" for entity in _RECORD_ENTITIES for action in _ACTIONS]
_READ_ORGANIZATION = ["prvReadUser", "prvReadTeam", "prvReadRole", "prvReadBusinessUnit"]
_ALL_PRIVILEGES += _READ_ORGANIZATION

ROLES = [
    {"roleid": ADMIN_ROLE_ID, "name": "System Administrator", "privileges": _ALL_PRIVILEGES},
    {
        "roleid": SALESPERSON_ROLE_ID,
        "name": "Salesperson",
        "privileges": [
            f"prv{action}{entity}"
            for entity in _RECORD_ENTITIES
            for action in ("Create", "Read", "Write", "Append", "AppendTo", "Assign", "Share")
        ] + _READ_ORGANIZATION,
    },
    {
        "roleid": READER_ROLE_ID,
        "name": "Sales Reader",
        "privileges": [f"prvRead{entity}" for entity in _RECORD_ENTITIES]
        + _READ_ORGANIZATION,
    },
]

# Access modes of systemuser.accessmode.
ACCESS_MODE_READ_WRITE = 0
ACCESS_MODE_NON_INTERACTIVE = 4

# Users of every environment, unless `environments` names the ones they belong to.
# A user with an `applicationid` is an application user: it has no email and cannot
# sign in on the sign-in page.
USERS = [
    {
        "systemuserid": ALEX_ID,
        "firstname": "Alex",
        "lastname": "Admin",
        "internalemailaddress": "alex.admin@contoso.example",
        "azureactivedirectoryobjectid": "00000000-0000-4000-8000-00000000b001",
        "roles": [ADMIN_ROLE_ID],
    },
    {
        "systemuserid": SAM_ID,
        "firstname": "Sam",
        "lastname": "Sales",
        "internalemailaddress": "sam.sales@contoso.example",
        "azureactivedirectoryobjectid": "00000000-0000-4000-8000-00000000b002",
        "roles": [SALESPERSON_ROLE_ID],
    },
    {
        "systemuserid": RILEY_ID,
        "firstname": "Riley",
        "lastname": "Reader",
        "internalemailaddress": "riley.reader@contoso.example",
        "azureactivedirectoryobjectid": "00000000-0000-4000-8000-00000000b003",
        "roles": [READER_ROLE_ID],
        "environments": [CONTOSO_SALES],
    },
    {
        "systemuserid": APP_USER_ID,
        "firstname": None,
        "lastname": "Lead Sync Application",
        "internalemailaddress": None,
        "azureactivedirectoryobjectid": APP_USER_OBJECT_ID,
        "applicationid": APP_USER_CLIENT_ID,
        "accessmode": ACCESS_MODE_NON_INTERACTIVE,
        "roles": [SALESPERSON_ROLE_ID],
    },
]


def users_of_environment(unique_name):
    """Return the seeded users that belong to the environment `unique_name`."""
    return [user for user in USERS if unique_name in user.get("environments", [unique_name])]

_PRIVILEGE_NAMESPACE = uuid.UUID("6f1c2b3a-9d8e-4f70-a1b2-c3d4e5f60718")


def privilege_id(name):
    """Return the stable id of a privilege name, as quoted in privilege errors."""
    return str(uuid.uuid5(_PRIVILEGE_NAMESPACE, name))


def privileges_of_roles(role_ids):
    """Return the set of privilege names that the given roles grant together."""
    granted = set()
    for role in ROLES:
        if role["roleid"] in role_ids:
            granted.update(role["privileges"])
    return granted
