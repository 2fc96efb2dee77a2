"""Table metadata that the sandbox serves: columns, types, max lengths and lookups.

The tables, logical names and max lengths follow the Dynamics 365 entity reference for
lead, contact, account, annotation, systemuser, team and role. To serve another table or
column, add it to TABLES below: validation, queries and the metadata endpoint read
everything from here.
"""

from dataclasses import dataclass, field

# Column types, named after the Dataverse AttributeType values that the metadata
# endpoint returns.
STRING = "String"
MEMO = "Memo"
INTEGER = "Integer"
BIGINT = "BigInt"
BOOLEAN = "Boolean"
DATETIME = "DateTime"
PICKLIST = "Picklist"
STATE = "State"
STATUS = "Status"
UNIQUEIDENTIFIER = "Uniqueidentifier"
LOOKUP = "Lookup"
CUSTOMER = "Customer"
OWNER = "Owner"

LOOKUP_TYPES = {LOOKUP, CUSTOMER, OWNER}

# Edm type of each column type, used in $filter type checks and error messages.
EDM_TYPES = {
    STRING: "Edm.String",
    MEMO: "Edm.String",
    INTEGER: "Edm.Int32",
    BIGINT: "Edm.Int64",
    BOOLEAN: "Edm.Boolean",
    DATETIME: "Edm.DateTimeOffset",
    PICKLIST: "Edm.Int32",
    STATE: "Edm.Int32",
    STATUS: "Edm.Int32",
    UNIQUEIDENTIFIER: "Edm.Guid",
    LOOKUP: "Edm.Guid",
    CUSTOMER: "Edm.Guid",
    OWNER: "Edm.Guid",
}


@dataclass(frozen=True)
class Column:
    """One attribute of a table."""

    name: str
    type: str
    display_name: str = ""
    max_length: int | None = None
    required_level: str = "None"
    valid_for_create: bool = True
    valid_for_update: bool = True
    # Picklist, state and status options: value -> label.
    options: dict = field(default_factory=dict)
    # Lookups: navigation property name -> logical name of the target table. A
    # single-target lookup has one navigation property named like the column, and a
    # customer or polymorphic lookup has one per target type. The owner lookup is the
    # exception: its one navigation property `ownerid` takes a user or a team, so its
    # target is a tuple of logical names.
    navigations: dict = field(default_factory=dict)

    @property
    def is_lookup(self):
        return self.type in LOOKUP_TYPES

    @property
    def value_name(self):
        """Name of the property that carries the value in the Web API."""
        return f"_{self.name}_value" if self.is_lookup else self.name

    @property
    def edm_type(self):
        return EDM_TYPES[self.type]

    @property
    def targets(self):
        """Logical names of the tables that the lookup can point to, sorted."""
        names = set()
        for target in self.navigations.values():
            names.update((target,) if isinstance(target, str) else target)
        return sorted(names)


@dataclass(frozen=True)
class Table:
    """One Dataverse table (entity)."""

    logical_name: str
    entity_set: str
    primary_key: str
    primary_name: str
    # Object type code, quoted in privilege errors ("on OTC=4 for entity 'lead'").
    object_type_code: int
    # Suffix of the privilege names, as in prvCreateLead or prvReadNote.
    privilege_entity: str
    columns: dict
    # Status reason that a record gets for each state when none is given.
    default_status: dict = field(default_factory=dict)
    # Read-only tables reject create, update and delete through the Web API.
    read_only: bool = False

    @property
    def type_name(self):
        return f"Microsoft.Dynamics.CRM.{self.logical_name}"

    def column_by_value_name(self, name):
        """Return the column that the Web API property `name` belongs to, or None."""
        for column in self.columns.values():
            if column.value_name == name:
                return column
        return None

    def lookup_by_navigation(self, navigation):
        """Return (column, target logical name) for a navigation property, or None."""
        for column in self.columns.values():
            if navigation in column.navigations:
                return column, column.navigations[navigation]
        return None


def _columns(*columns):
    return {column.name: column for column in columns}


def _strings(names_and_lengths):
    return [Column(name, STRING, max_length=length) for name, length in names_and_lengths]


def _system_columns(primary_key, state_options=None, status_options=None, owned=True):
    """Columns that every table in the sandbox carries: key, audit fields, state."""
    columns = [
        Column(primary_key, UNIQUEIDENTIFIER, valid_for_update=False),
        Column("createdon", DATETIME, valid_for_create=False, valid_for_update=False),
        Column("modifiedon", DATETIME, valid_for_create=False, valid_for_update=False),
        Column("versionnumber", BIGINT, valid_for_create=False, valid_for_update=False),
        Column(
            "createdby", LOOKUP, valid_for_create=False, valid_for_update=False,
            navigations={"createdby": "systemuser"},
        ),
        Column(
            "modifiedby", LOOKUP, valid_for_create=False, valid_for_update=False,
            navigations={"modifiedby": "systemuser"},
        ),
    ]
    if owned:
        columns.append(
            Column("ownerid", OWNER, navigations={"ownerid": ("systemuser", "team")})
        )
        # The service sets these from ownerid, so one of them contains the owner's id.
        columns.append(Column(
            "owninguser", LOOKUP, valid_for_create=False, valid_for_update=False,
            navigations={"owninguser": "systemuser"},
        ))
        columns.append(Column(
            "owningteam", LOOKUP, valid_for_create=False, valid_for_update=False,
            navigations={"owningteam": "team"},
        ))
    if state_options:
        columns.append(Column("statecode", STATE, valid_for_create=False, options=state_options))
        columns.append(Column("statuscode", STATUS, options=status_options))
    return columns


LEAD_SOURCES = {
    1: "Advertisement",
    2: "Employee Referral",
    3: "External Referral",
    4: "Partner",
    5: "Public Relations",
    6: "Seminar",
    7: "Trade Show",
    8: "Web",
    9: "Word of Mouth",
    10: "Other",
}

LEAD = Table(
    logical_name="lead",
    entity_set="leads",
    primary_key="leadid",
    primary_name="fullname",
    object_type_code=4,
    privilege_entity="Lead",
    default_status={0: 1, 1: 3, 2: 4},
    columns=_columns(
        *_system_columns(
            "leadid",
            state_options={0: "Open", 1: "Qualified", 2: "Disqualified"},
            status_options={
                1: "New",
                2: "Contacted",
                3: "Qualified",
                4: "Lost",
                5: "Cannot Contact",
                6: "No Longer Interested",
                7: "Canceled",
            },
        ),
        Column("firstname", STRING, "First Name", max_length=50),
        Column("lastname", STRING, "Last Name", max_length=50, required_level="ApplicationRequired"),
        Column(
            "fullname", STRING, "Name", max_length=160,
            valid_for_create=False, valid_for_update=False,
        ),
        Column("subject", STRING, "Topic", max_length=300, required_level="ApplicationRequired"),
        Column("companyname", STRING, "Company Name", max_length=100),
        *_strings([
            ("emailaddress1", 100), ("emailaddress2", 100), ("emailaddress3", 100),
            ("telephone1", 50), ("telephone2", 50), ("telephone3", 50),
            ("mobilephone", 20), ("jobtitle", 100), ("websiteurl", 200),
            ("address1_line1", 250), ("address1_line2", 250), ("address1_line3", 250),
            ("address1_city", 80), ("address1_stateorprovince", 50),
            ("address1_postalcode", 20), ("address1_country", 80),
        ]),
        Column("description", MEMO, "Description", max_length=2000),
        Column("leadsourcecode", PICKLIST, "Lead Source", options=LEAD_SOURCES),
        Column("parentaccountid", LOOKUP, navigations={"parentaccountid": "account"}),
        Column("parentcontactid", LOOKUP, navigations={"parentcontactid": "contact"}),
        Column(
            "customerid", CUSTOMER,
            navigations={"customerid_account": "account", "customerid_contact": "contact"},
        ),
    ),
)

CONTACT = Table(
    logical_name="contact",
    entity_set="contacts",
    primary_key="contactid",
    primary_name="fullname",
    object_type_code=2,
    privilege_entity="Contact",
    default_status={0: 1, 1: 2},
    columns=_columns(
        *_system_columns(
            "contactid",
            state_options={0: "Active", 1: "Inactive"},
            status_options={1: "Active", 2: "Inactive"},
        ),
        Column("firstname", STRING, "First Name", max_length=50),
        Column("lastname", STRING, "Last Name", max_length=50, required_level="ApplicationRequired"),
        Column(
            "fullname", STRING, "Full Name", max_length=160,
            valid_for_create=False, valid_for_update=False,
        ),
        *_strings([
            ("emailaddress1", 100), ("emailaddress2", 100), ("emailaddress3", 100),
            ("telephone1", 50), ("telephone2", 50), ("telephone3", 50),
            ("mobilephone", 50), ("jobtitle", 100), ("websiteurl", 200),
        ]),
        Column("description", MEMO, "Description", max_length=2000),
        Column(
            "parentcustomerid", CUSTOMER,
            navigations={
                "parentcustomerid_account": "account",
                "parentcustomerid_contact": "contact",
            },
        ),
    ),
)

ACCOUNT = Table(
    logical_name="account",
    entity_set="accounts",
    primary_key="accountid",
    primary_name="name",
    object_type_code=1,
    privilege_entity="Account",
    default_status={0: 1, 1: 2},
    columns=_columns(
        *_system_columns(
            "accountid",
            state_options={0: "Active", 1: "Inactive"},
            status_options={1: "Active", 2: "Inactive"},
        ),
        Column("name", STRING, "Account Name", max_length=160, required_level="ApplicationRequired"),
        # NOTE: the 100-character limit of account emailaddress1 is unconfirmed.
        *_strings([("websiteurl", 200), ("telephone1", 50), ("emailaddress1", 100)]),
        Column("parentaccountid", LOOKUP, navigations={"parentaccountid": "account"}),
    ),
)

ANNOTATION = Table(
    logical_name="annotation",
    entity_set="annotations",
    primary_key="annotationid",
    primary_name="subject",
    object_type_code=5,
    privilege_entity="Note",
    columns=_columns(
        *_system_columns("annotationid"),
        Column("subject", STRING, "Title", max_length=500),
        Column("notetext", MEMO, "Description", max_length=100000),
        Column(
            "objectid", LOOKUP,
            navigations={
                "objectid_lead": "lead",
                "objectid_contact": "contact",
                "objectid_account": "account",
            },
        ),
    ),
)

SYSTEMUSER = Table(
    logical_name="systemuser",
    entity_set="systemusers",
    primary_key="systemuserid",
    primary_name="fullname",
    object_type_code=8,
    privilege_entity="User",
    read_only=True,
    columns=_columns(
        *_system_columns("systemuserid", owned=False),
        Column("fullname", STRING, "Full Name", max_length=200),
        Column("firstname", STRING, "First Name", max_length=64),
        Column("lastname", STRING, "Last Name", max_length=64),
        Column("internalemailaddress", STRING, "Primary Email", max_length=100),
        Column("domainname", STRING, "User Name", max_length=1024),
        Column("isdisabled", BOOLEAN, "Status"),
        Column("azureactivedirectoryobjectid", UNIQUEIDENTIFIER, "Azure AD Object ID"),
        # The client id of an application user's app, else null.
        Column("applicationid", UNIQUEIDENTIFIER, "Application ID"),
        Column(
            "accessmode", PICKLIST, "Access Mode",
            options={0: "Read-Write", 1: "Administrative", 2: "Read", 3: "Support User",
                     4: "Non-interactive", 5: "Delegated Admin"},
        ),
        Column("businessunitid", LOOKUP, navigations={"businessunitid": "businessunit"}),
    ),
)

ROLE = Table(
    logical_name="role",
    entity_set="roles",
    primary_key="roleid",
    primary_name="name",
    object_type_code=1036,
    privilege_entity="Role",
    read_only=True,
    columns=_columns(
        *_system_columns("roleid", owned=False),
        Column("name", STRING, "Name", max_length=100),
        Column("businessunitid", LOOKUP, navigations={"businessunitid": "businessunit"}),
    ),
)

TEAM = Table(
    logical_name="team",
    entity_set="teams",
    primary_key="teamid",
    primary_name="name",
    object_type_code=9,
    privilege_entity="Team",
    read_only=True,
    columns=_columns(
        *_system_columns("teamid", owned=False),
        Column("name", STRING, "Team Name", max_length=160),
        Column(
            "teamtype", PICKLIST, "Team Type",
            options={0: "Owner", 1: "Access", 2: "Security Group", 3: "Office Group"},
        ),
        Column("businessunitid", LOOKUP, navigations={"businessunitid": "businessunit"}),
    ),
)

TABLES = {
    table.logical_name: table
    for table in (LEAD, CONTACT, ACCOUNT, ANNOTATION, SYSTEMUSER, TEAM, ROLE)
}
TABLES_BY_ENTITY_SET = {table.entity_set: table for table in TABLES.values()}

# Collection-valued navigation from systemuser to role, readable through $expand.
USER_ROLES_NAVIGATION = "systemuserroles_association"


def table_for(name):
    """Return the table for a logical name or an entity set name, or None."""
    return TABLES.get(name) or TABLES_BY_ENTITY_SET.get(name)
