"""Global Discovery Service stand-in: the environments that the signed-in user can use.

Served on the sandbox's main port, where DISCOVERY_URL is {base_url}/globaldisco:

    GET {DISCOVERY_URL}/api/discovery/v2.0/Instances?$select&$filter
    GET {DISCOVERY_URL}/api/discovery/v2.0/Instances(UniqueName='<unique name>')
    GET {DISCOVERY_URL}/api/discovery/v2.0/Instances(<Id>)

A request needs a bearer token issued for the resource {base_url}/globaldisco, which is
the resource of the scope `{base_url}/globaldisco/.default`. As the real service at
https://globaldisco.crm.dynamics.com does, the list contains one Instance per environment
in which the signed-in user has an enabled systemuser, matched by Entra object id.
"""

import json
import logging
import re
from urllib.parse import unquote

from . import schema, seed
from .oauth import is_loopback_audience
from .odata_filter import FilterError, parse_filter
from .store import ACCESS_TOKEN
from .web import Response

logger = logging.getLogger(__name__)

DISCOVERY_PATH = "/globaldisco"
INSTANCES_PATH = DISCOVERY_PATH + "/api/discovery/v2.0/Instances"
QUERY_OPTIONS = {"$select", "$filter"}
# Instance.State of an enabled environment.
STATE_ENABLED = 0
# NOTE: Instance.OrganizationType 0 is taken to mean a customer's own environment; the
# meaning of the values is undocumented.
ORGANIZATION_TYPE_CUSTOMER = 0

_KEY_BY_UNIQUE_NAME = re.compile(r"^UniqueName='(?P<name>(?:[^']|'')*)'$")
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def _column(name, column_type):
    return schema.Column(name, column_type)


# The properties of an Instance, typed so that odata_filter can evaluate $filter on them.
INSTANCE = schema.Table(
    logical_name="instance",
    entity_set="Instances",
    primary_key="Id",
    primary_name="FriendlyName",
    object_type_code=0,
    privilege_entity="",
    read_only=True,
    columns={column.name: column for column in (
        _column("Id", schema.UNIQUEIDENTIFIER),
        _column("UniqueName", schema.STRING),
        _column("UrlName", schema.STRING),
        _column("FriendlyName", schema.STRING),
        _column("State", schema.INTEGER),
        _column("Version", schema.STRING),
        _column("Url", schema.STRING),
        _column("ApiUrl", schema.STRING),
        _column("LastUpdated", schema.DATETIME),
        # A string, because a tenant's default environment has an id such as
        # "Default-<tenant id>".
        _column("EnvironmentId", schema.STRING),
        _column("TenantId", schema.UNIQUEIDENTIFIER),
        _column("Region", schema.STRING),
        _column("Purpose", schema.STRING),
        _column("OrganizationType", schema.INTEGER),
        _column("TrialExpirationDate", schema.DATETIME),
        _column("IsUserSysAdmin", schema.BOOLEAN),
        _column("DatacenterId", schema.UNIQUEIDENTIFIER),
    )},
)


class DiscoveryError(Exception):
    def __init__(self, status, message, headers=None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def is_discovery_path(path):
    return path == DISCOVERY_PATH or path.startswith(DISCOVERY_PATH + "/")


class GlobalDiscovery:
    """Handle the discovery requests for the environments of one sandbox.

    `grants` is the store of the sign-in grants, and `environments` the
    environments.SandboxEnvironment list, Contoso Sales first.
    """

    def __init__(self, grants, environments):
        self.grants = grants
        self.environments = environments

    def handle(self, request):
        """Return a Response for a discovery path, or None if `request` is not one."""
        if not is_discovery_path(request.path):
            return None
        try:
            key = self._route(request)
            object_id = self.authenticate(request)
            instances = self.instances(object_id)
            if key is not None:
                return self._single(request, instances, key)
            return self._list(request, instances)
        except DiscoveryError as error:
            if error.status >= 500:
                logger.error("Discovery request failed: %s", error.message)
            return _error_response(error)

    def _route(self, request):
        """Return the key of an Instances(<key>) request, None for the list, or raise 404."""
        path = unquote(request.path)
        if path == INSTANCES_PATH:
            key = None
        elif path.startswith(INSTANCES_PATH + "(") and path.endswith(")"):
            key = path[len(INSTANCES_PATH) + 1:-1]
        else:
            raise DiscoveryError(
                404, f"No resource was found at '{request.path}'. The discovery service "
                     f"serves {INSTANCES_PATH}.",
            )
        if request.method != "GET":
            raise DiscoveryError(
                405, f"The HTTP method '{request.method}' is not allowed on this resource."
            )
        return key

    def authenticate(self, request):
        """Return the Entra object id of the user that the bearer token signed in.

        Raise 401 for a missing, unknown, expired or revoked token, a token for another
        resource (such as an environment's Web API) and an app-only token.
        """
        challenge = {
            "WWW-Authenticate": f"Bearer authorization_uri={request.base_url}/"
                                f"{seed.TENANT_NAME}/oauth2/authorize, "
                                f"resource_id={request.base_url}{DISCOVERY_PATH}",
        }
        # NOTE: "Authorization has been denied for this request." is the message that the
        # real service is reported to send with a 401; the JSON around it is unconfirmed.
        denied = DiscoveryError(401, "Authorization has been denied for this request.", challenge)
        scheme, _, token = request.header("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise denied
        grant = self.grants.get_grant(ACCESS_TOKEN, token.strip())
        if grant is None or grant["expired"] or grant["revoked"]:
            raise denied
        if not self._is_own_audience(grant["audience"]):
            logger.info("Rejected a token for %r at the discovery service", grant["audience"])
            raise denied
        if grant.get("app_only"):
            # NOTE: the discovery service lists the environments of a user, so app-only
            # tokens are rejected. Whether the real service returns 401 or 403 is
            # unconfirmed.
            logger.info("Rejected an app-only token of client %s at the discovery service",
                        grant["client_id"])
            raise denied
        object_id = grant.get("oid")
        if object_id is None:
            # Grants stored without an object id (as tests create them) name the user
            # of the main environment.
            user = self.grants.get("systemuser", grant["systemuserid"])
            object_id = user["azureactivedirectoryobjectid"] if user else None
        if object_id is None:
            raise denied
        return object_id

    def _is_own_audience(self, audience):
        return is_loopback_audience(audience, self.environments[0].port, DISCOVERY_PATH)

    def instances(self, object_id):
        """Return the Instance of every environment where the user exists and is enabled."""
        instances = []
        for environment in self.environments:
            user = environment.store.user_by_object_id(object_id)
            if user is None or user["isdisabled"]:
                continue
            roles = environment.store.role_ids_of_user(user["systemuserid"])
            instances.append(_instance(environment, seed.ADMIN_ROLE_ID in roles))
        return instances

    def _list(self, request, instances):
        options = _options(request)
        if options.get("$filter") is not None:
            try:
                predicate = parse_filter(options["$filter"], INSTANCE)
            except FilterError as error:
                raise DiscoveryError(400, str(error)) from None
            instances = [instance for instance in instances if predicate(instance)]
        select = _parse_select(options.get("$select"))
        return _json(200, {
            "@odata.context": f"{request.base_url}{INSTANCES_PATH[:-len('Instances')]}"
                              "$metadata#Instances",
            "value": [_project(instance, select) for instance in instances],
        })

    def _single(self, request, instances, key):
        options = _options(request, allowed={"$select"})
        match = _KEY_BY_UNIQUE_NAME.match(key)
        if match is not None:
            unique_name = match.group("name").replace("''", "'").lower()
            found = [item for item in instances if item["UniqueName"].lower() == unique_name]
        elif _GUID.match(key):
            found = [item for item in instances if item["Id"] == key.lower()]
        else:
            raise DiscoveryError(
                400, f"The key '{key}' is not valid. Use Instances(UniqueName='<name>') or "
                     "Instances(<Id>).",
            )
        if not found:
            # An environment that the user cannot use gets the same 404 as an absent one.
            raise DiscoveryError(404, f"No instance matches the key {key} for this user.")
        payload = {
            "@odata.context": f"{request.base_url}{INSTANCES_PATH[:-len('Instances')]}"
                              "$metadata#Instances/$entity",
        }
        payload.update(_project(found[0], _parse_select(options.get("$select"))))
        return _json(200, payload)


def _instance(environment, is_sys_admin):
    environment_seed = seed.ENVIRONMENTS_BY_UNIQUE_NAME[environment.unique_name]
    return {
        "Id": environment.organization_id,
        "UniqueName": environment.unique_name,
        "UrlName": environment_seed.url_name,
        "FriendlyName": environment.name,
        "State": STATE_ENABLED,
        "Version": seed.DATAVERSE_VERSION,
        "Url": environment.url,
        "ApiUrl": environment.url,
        "LastUpdated": seed.ENVIRONMENTS_LAST_UPDATED,
        "EnvironmentId": environment.environment_id,
        "TenantId": seed.TENANT_ID,
        "Region": seed.REGION,
        "Purpose": "",
        "OrganizationType": ORGANIZATION_TYPE_CUSTOMER,
        "TrialExpirationDate": None,
        "IsUserSysAdmin": is_sys_admin,
        "DatacenterId": seed.DATACENTER_ID,
    }


def _options(request, allowed=QUERY_OPTIONS):
    options = {}
    for name, value in request.query_pairs():
        if not name.startswith("$"):
            continue
        if name not in allowed:
            raise DiscoveryError(
                400, f"The query parameter '{name}' is not supported. Use "
                     f"{' or '.join(sorted(allowed))}.",
            )
        if name in options:
            raise DiscoveryError(400, f"The query parameter '{name}' is specified more than once.")
        options[name] = value
    return options


def _parse_select(text):
    if text is None:
        return None
    names = [name.strip() for name in text.split(",")]
    for name in names:
        if name not in INSTANCE.columns:
            raise DiscoveryError(
                400, f"Could not find a property named '{name}' on type 'Instance'."
            )
    return names


def _project(instance, select):
    if select is None:
        return dict(instance)
    return {name: instance[name] for name in select}


def _json(status, payload, headers=None):
    response_headers = {
        "OData-Version": "4.0",
        "Content-Type": "application/json; odata.metadata=minimal",
    }
    response_headers.update(headers or {})
    return Response(status, json.dumps(payload).encode("utf-8"), response_headers)


def _error_response(error):
    return _json(error.status, {"error": {"code": "", "message": error.message}}, error.headers)
