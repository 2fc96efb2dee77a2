"""Fixed identities of the sandbox org: tenant, organization, users, teams, roles, privileges.

The ids never change, so tests and demo data can name them.
"""

import uuid

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
    },
]

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
