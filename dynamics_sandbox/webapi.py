"""Dataverse Web API stand-in under /api/data/v9.2/.

Served requests (entity sets from schema.TABLES, all names case-sensitive):

    GET    /api/data/v9.2/WhoAmI
    GET    /api/data/v9.2/{set}?$select&$filter&$orderby&$top&$expand&$count
    POST   /api/data/v9.2/{set}
    POST   /api/data/v9.2/$batch               multipart/mixed batch (see batch.py)
    GET    /api/data/v9.2/{set}(<id>)?$select&$expand
    PATCH  /api/data/v9.2/{set}(<id>)          update, upsert or create-only
    DELETE /api/data/v9.2/{set}(<id>)
    GET    /api/data/v9.2/systemusers(<id>)/Microsoft.Dynamics.CRM.RetrieveUserPrivileges()
    GET    /api/data/v9.2/EntityDefinitions(LogicalName='<name>')/Attributes[/<cast>]

Each environment (see environments.py) serves these at its own URL. Every request needs
a bearer token that the sign-in endpoints issued for that URL: a token for another
environment or for the discovery service gets 401. The token's user is the environment's
systemuser with the same azureactivedirectoryobjectid, and an app-only token's is the
application user whose applicationid is the token's client id. A token whose user or
app has no systemuser in the environment gets 403 with code 0x80072560.
"""

import json
import logging
import re
import sqlite3
import time
import uuid
from urllib.parse import quote, unquote

from . import schema, seed
from .faults import DROP_RESPONSE, THROTTLE, TRANSIENT_ERROR, Faults
from .limits import ServiceProtection
from .oauth import is_loopback_audience
from .odata_filter import FilterError, parse_filter
from .records import (
    DataverseError,
    apply_update,
    duplicate_key,
    etag,
    new_id,
    new_record,
    not_found,
    parse_guid,
    parse_json_body,
    parse_payload,
    require_privilege,
    serialize,
)
from .store import ACCESS_TOKEN
from .web import Response

logger = logging.getLogger(__name__)

API_PREFIX = "/api/data/v9.2/"
QUERY_OPTIONS = {"$select", "$filter", "$orderby", "$top", "$expand", "$count", "$skiptoken"}
UNSUPPORTED_QUERY_OPTIONS = {"$skip", "$search", "$apply", "$format", "$levels", "$compute"}
MAX_PAGE_SIZE = 5000
MAX_INT32 = 2**31 - 1
MAX_URL_LENGTH = 32 * 1024
# Dataverse allows longer URLs for the requests inside a $batch body.
MAX_BATCH_URL_LENGTH = 64 * 1024
BATCH_SEGMENT = "$batch"

_SEGMENT = re.compile(r"^(?P<name>[^()]+)(?:\((?P<key>[^)]*)\))?$")
_SKIPTOKEN = re.compile(
    r'^<cookie pagenumber="(?P<page>[0-9]{1,10})" offset="(?P<offset>[0-9]{1,10})" />$'
)
_EXPAND = re.compile(r"^(?P<name>[A-Za-z_]+)(?:\(\$select=(?P<select>[A-Za-z_,]*)\))?$")


def parse_prefer(header):
    """Return the preferences of a Prefer header as {name: value}.

    Commas inside a double-quoted value do not split, so
    `odata.include-annotations="a,b"` stays one preference. A preference without a
    value maps to "".
    """
    preferences = {}
    for part in re.findall(r'(?:[^,"]|"[^"]*")+', header or ""):
        name, _, value = part.strip().partition("=")
        if name:
            preferences[name.strip()] = value.strip().strip('"')
    return preferences


def included_annotations(request):
    """Return (predicate on annotation names, Preference-Applied value) or (None, None).

    The predicate follows `Prefer: odata.include-annotations`: `*` includes all,
    `Namespace.*` a namespace, a full name that annotation, and a leading `-` excludes.
    """
    value = parse_prefer(request.header("Prefer", "")).get("odata.include-annotations")
    if value is None:
        return None, None
    patterns = [pattern.strip() for pattern in value.split(",") if pattern.strip()]

    def matches(pattern, name):
        if pattern == "*":
            return True
        if pattern.endswith(".*"):
            return name.startswith(pattern[:-1])
        return pattern == name

    def predicate(name):
        if any(matches(pattern[1:], name) for pattern in patterns if pattern.startswith("-")):
            return False
        return any(matches(pattern, name) for pattern in patterns if not pattern.startswith("-"))

    return predicate, f'odata.include-annotations="{value}"'


def _add_preference(headers, applied):
    if applied:
        existing = headers.get("Preference-Applied")
        headers["Preference-Applied"] = f"{existing},{applied}" if existing else applied


def odata_headers(extra=None):
    headers = {
        "OData-Version": "4.0",
        "Content-Type": "application/json; odata.metadata=minimal",
    }
    headers.update(extra or {})
    return headers


def json_result(status, payload, headers=None):
    return Response(status, json.dumps(payload).encode("utf-8"), odata_headers(headers))


def error_response(error):
    if error.status == 401:
        # NOTE: the body of Dataverse's 401 is unconfirmed, so the sandbox sends none and
        # clients have to rely on the status and the WWW-Authenticate header.
        return Response(401, b"", {"OData-Version": "4.0", **error.headers})
    return json_result(
        error.status, {"error": {"code": error.code, "message": error.message}}, error.headers
    )


def _not_found_segment(segment):
    return DataverseError(404, "0x8006088a", f"Resource not found for the segment '{segment}'.")


class WebApi:
    """Handle /api/data/v9.2/ requests for one environment of the sandbox.

    `store` holds the environment's records and `grants` the sign-in grants, which
    live in the main store for every environment (`store` when None). `port` is the
    environment's port, which a token's audience must name (settings.port when None).
    `sign_in_url` is the https://HOST:PORT of the sign-in endpoints that 401 responses
    point to (the request's own server when None).
    """

    def __init__(self, store, settings, faults=None, *, organization_id=seed.ORGANIZATION_ID,
                 grants=None, port=None, sign_in_url=None):
        from .batch import BatchProcessor

        self.store = store
        self.grants = grants or store
        self.settings = settings
        self.organization_id = organization_id
        self._port = port
        self.sign_in_url = sign_in_url
        self.faults = faults or Faults()
        self.protection = ServiceProtection(
            settings.rate_limit_requests, settings.rate_limit_concurrent,
            settings.rate_limit_execution_ms,
        )
        self.batch = BatchProcessor(self)

    def handle(self, request):
        """Return a Response for a Web API path, or None if `request` is not one."""
        if not (request.path + "/").startswith(API_PREFIX):
            return None
        # The latency model's network round trip, once per HTTP request.
        _sleep_ms(self.settings.latency_ms)

        try:
            user = self.authenticate(request)
            request.user_id = user["systemuserid"]
            fault = self.faults.decide()
            if fault == THROTTLE:
                raise self._injected_throttle()
            remaining = self.protection.enter(user["systemuserid"])
        except DataverseError as error:
            if error.status == 429:
                logger.warning("Throttled user %s: %s", request.user_id, error.message)
            return error_response(error)

        try:
            if fault == TRANSIENT_ERROR:
                logger.warning("Injected a transient error into %s %s for user %s",
                               request.method, request.path, request.user_id)
                response = error_response(_injected_transient_error())
            elif request.path == API_PREFIX + BATCH_SEGMENT:
                response = self.batch.handle(request, user)
            else:
                response = self.run_operation(request, user)
        finally:
            self.protection.leave(user["systemuserid"])

        if fault == DROP_RESPONSE:
            logger.warning("Dropping the %s response to %s %s for user %s (injected fault)",
                           response.status, request.method, request.path, request.user_id)
            response.drop_connection = True
        self._add_rate_limit_headers(response, user["systemuserid"], remaining)
        return response

    def _add_rate_limit_headers(self, response, user_id, requests_remaining):
        response.headers["x-ms-ratelimit-burst-remaining-xrm-requests"] = str(requests_remaining)
        # NOTE: the number format (milliseconds with thousands separators and two
        # decimals) follows responses seen from Dataverse, not a documented contract.
        time_remaining = self.protection.execution_ms_remaining(user_id)
        response.headers["x-ms-ratelimit-time-remaining-xrm-requests"] = f"{time_remaining:,.2f}"

    def _injected_throttle(self):
        return DataverseError(
            429, "0x80072322",
            f"Number of requests exceeded the limit of {self.protection.max_requests} over "
            "time window of 300 seconds.",
            {"Retry-After": str(self.faults.retry_after)},
        )

    def run_operation(self, request, user, outer=None):
        """Run one Web API operation and add it to the request log entries.

        `outer` is the $batch request that `request` is a part of, which collects the
        log entries of its parts.
        """
        started = time.monotonic()
        try:
            response = self.dispatch(request, user)
        except DataverseError as error:
            if error.status >= 500:
                logger.error("Web API error %s: %s", error.code, error.message)
            response = error_response(error)
        # The latency model's server execution time, charged to every operation. The
        # sandbox's own work counts toward it, so an operation costs operation_ms (or
        # more, when the sandbox itself is slower), never operation_ms plus that work.
        _sleep_ms(self.settings.operation_ms - (time.monotonic() - started) * 1000)
        duration_ms = (time.monotonic() - started) * 1000
        self.protection.record_execution(user["systemuserid"], duration_ms)
        (outer or request).operations.append({
            "method": request.method,
            "path": request.path,
            "query": request.query,
            "status": response.status,
            "duration_ms": round(duration_ms, 3),
        })
        return response

    # Authentication

    @property
    def port(self):
        return self._port if self._port is not None else self.settings.port

    def authenticate(self, request):
        """Return the systemuser that the request's bearer token acts as.

        Raise 401 for a missing, unknown, expired or revoked token, for a token issued
        for another resource (such as another environment) and for a disabled user,
        and 403 when the token's user or app has no systemuser in this environment.
        """
        authority = f"{self.sign_in_url or request.base_url}/{seed.TENANT_NAME}"
        challenge = {
            "WWW-Authenticate": f"Bearer authorization_uri={authority}/oauth2/authorize, "
                                f"resource_id={request.base_url}",
        }
        authorization = request.header("Authorization", "")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _unauthorized(challenge)
        grant = self.grants.get_grant(ACCESS_TOKEN, token.strip())
        if grant is None or grant["expired"] or grant["revoked"]:
            raise _unauthorized(challenge)
        if not self._is_own_audience(grant["audience"]):
            logger.info("Rejected a token for %r at the environment on port %d",
                        grant["audience"], self.port)
            raise _unauthorized(challenge)
        user = self._principal(grant)
        if user is None or user["isdisabled"]:
            raise _unauthorized(challenge)
        return user

    def _principal(self, grant):
        """Return this environment's systemuser for the token's user or app.

        A user is found by its Entra object id, and an app by its application user.
        Tokens stored without either (as tests create them) name the systemuserid.
        """
        if grant.get("app_only"):
            user = self.store.user_by_application_id(grant["appid"])
        elif grant.get("oid"):
            user = self.store.user_by_object_id(grant["oid"])
        else:
            return self.store.get("systemuser", grant["systemuserid"])
        if user is None:
            # NOTE: 0x80072560 is the error reported for users who are not members.
            # That an app without an application user gets the same one is unconfirmed.
            logger.warning("Token of %s has no systemuser in organization %s",
                           grant.get("appid") if grant.get("app_only") else grant.get("oid"),
                           self.organization_id)
            raise DataverseError(403, "0x80072560", "The user is not a member of the organization.")
        return user

    def _is_own_audience(self, audience):
        """Accept a token for https://127.0.0.1:PORT, https://localhost:PORT or [::1].

        A resource with a path, such as the discovery service's, is another audience.
        """
        return is_loopback_audience(audience, self.port)

    # Routing

    def dispatch(self, request, user):
        max_length = MAX_BATCH_URL_LENGTH if request.in_batch else MAX_URL_LENGTH
        if len(request.path) + len(request.query) + 1 > max_length:
            raise DataverseError(
                414, "0x0", f"The request URL is longer than {max_length} characters."
            )
        relative = unquote(request.path[len(API_PREFIX):]).rstrip("/")
        segments = _split_segments(relative)
        if not segments:
            raise _not_found_segment("")
        first = _SEGMENT.match(segments[0])
        if first is None:
            raise _not_found_segment(segments[0])
        name, key = first.group("name"), first.group("key")

        if name == "WhoAmI" and len(segments) == 1 and key in (None, ""):
            _require_method(request, "GET")
            return json_result(200, {
                "@odata.context": f"{request.base_url}{API_PREFIX}$metadata"
                                  "#Microsoft.Dynamics.CRM.WhoAmIResponse",
                "BusinessUnitId": seed.BUSINESS_UNIT_ID,
                "UserId": user["systemuserid"],
                "OrganizationId": self.organization_id,
            })
        if name == "EntityDefinitions" and key is not None:
            _require_method(request, "GET")
            return self.attribute_metadata(request, key, segments[1:])

        table = schema.TABLES_BY_ENTITY_SET.get(name)
        if table is None:
            raise _not_found_segment(name)
        if key is None:
            if len(segments) > 1:
                raise _not_found_segment(segments[1])
            if request.method == "GET":
                return self.query(request, user, table)
            if request.method == "POST":
                return self.create(request, user, table)
            raise _method_not_allowed(request.method)
        record_id = parse_guid(key)
        if len(segments) == 2 and table is schema.SYSTEMUSER and segments[1] in (
            "Microsoft.Dynamics.CRM.RetrieveUserPrivileges()", "RetrieveUserPrivileges()",
        ):
            _require_method(request, "GET")
            return self.retrieve_user_privileges(request, user, record_id)
        if len(segments) > 1:
            raise _not_found_segment(segments[1])
        if request.method == "GET":
            return self.retrieve(request, user, table, record_id)
        if request.method == "PATCH":
            return self.update(request, user, table, record_id)
        if request.method == "DELETE":
            return self.delete(request, user, table, record_id)
        raise _method_not_allowed(request.method)

    # Query options

    def _options(self, request, table, allowed):
        options = {}
        for name, value in request.query_pairs():
            if not name.startswith("$"):
                continue  # OData ignores custom query options.
            if name in UNSUPPORTED_QUERY_OPTIONS:
                raise DataverseError(400, "0x0", f"The query parameter {name} is not supported")
            if name not in allowed:
                raise DataverseError(
                    400, "0x0",
                    f"The query parameter '{name}' is not supported. Query option names are "
                    f"case-sensitive; supported here: {', '.join(sorted(allowed))}.",
                )
            if name in options:
                raise DataverseError(
                    400, "0x0",
                    f"Query option '{name}' was specified more than once, but it must be "
                    "specified at most once.",
                )
            options[name] = value
        options["select"] = _parse_select(table, options.get("$select"))
        options["expand"] = _parse_expand(table, options.get("$expand"))
        return options

    # Handlers

    def query(self, request, user, table):
        require_privilege(self.store, user, "Read", table)
        options = self._options(request, table, QUERY_OPTIONS)
        rows = self.store.records(table.logical_name)

        if options.get("$filter") is not None:
            try:
                predicate = parse_filter(options["$filter"], table)
            except FilterError as error:
                raise DataverseError(400, "0x0", str(error)) from None
            rows = [row for row in rows if predicate(row)]
        if options.get("$orderby"):
            rows = _order(rows, table, options["$orderby"])

        page_size = _max_page_size(request)
        headers = {}
        if page_size is not None:
            headers["Preference-Applied"] = f"odata.maxpagesize={page_size}"
        elif options.get("$top") is not None:
            rows = rows[: _parse_top(options["$top"])]
        annotations, applied = included_annotations(request)
        _add_preference(headers, applied)
        total = len(rows)
        page, start = 1, 0
        if options.get("$skiptoken") is not None:
            match = _SKIPTOKEN.match(options["$skiptoken"])
            if match is None:
                raise DataverseError(400, "0x0", "The $skiptoken value is not valid. Use the "
                                                 "@odata.nextLink of the previous page as is.")
            page, start = int(match.group("page")), int(match.group("offset"))
        size = page_size or MAX_PAGE_SIZE
        page_rows = rows[start: start + size]

        context = f"{request.base_url}{API_PREFIX}$metadata#{table.entity_set}"
        if options["select"] is not None:
            context += f"({','.join(options['select'])})"
        payload = {"@odata.context": context}
        if options.get("$count") is not None:
            if options["$count"] not in ("true", "false"):
                raise DataverseError(400, "0x0", f"'{options['$count']}' is not a valid count option.")
            if options["$count"] == "true":
                payload["@odata.count"] = total
        payload["value"] = [
            self._present(table, row, options, annotations) for row in page_rows
        ]
        if start + size < total:
            payload["@odata.nextLink"] = _next_link(request, page + 1, start + size)
        return json_result(200, payload, headers)

    def _present(self, table, record, options, annotations=None):
        output = serialize(table, record, options["select"], annotations)
        if options["expand"] is not None:
            select = options["expand"]
            output[schema.USER_ROLES_NAVIGATION] = [
                serialize(schema.ROLE, self.store.get("role", role_id), select)
                for role_id in self.store.role_ids_of_user(record["systemuserid"])
            ]
        return output

    def retrieve(self, request, user, table, record_id):
        require_privilege(self.store, user, "Read", table)
        options = self._options(request, table, {"$select", "$expand"})
        record = self.store.get(table.logical_name, record_id)
        if record is None:
            raise not_found(table, record_id)
        payload = {"@odata.context": f"{request.base_url}{API_PREFIX}$metadata#"
                                     f"{table.entity_set}/$entity"}
        annotations, applied = included_annotations(request)
        payload.update(self._present(table, record, options, annotations))
        headers = {"ETag": etag(record)}
        _add_preference(headers, applied)
        return json_result(200, payload, headers)

    def _read_body(self, request, table, creating):
        content_type = request.header("Content-Type", "")
        if not content_type.split(";")[0].strip().lower() == "application/json":
            raise DataverseError(
                415, "0x0",
                f"The content type '{content_type}' is not supported. Send "
                "'Content-Type: application/json'.",
            )
        payload = parse_json_body(request.body)
        return parse_payload(self.store, table, payload, creating)

    def _check_write(self, table):
        if table.read_only:
            raise DataverseError(
                405, "0x0",
                f"The entity set '{table.entity_set}' is read-only in the sandbox.",
            )

    def _check_binds(self, user, table, binds, values_owner_change):
        # Setting the owner needs Assign, not Append, so ownerid alone needs no Append
        # and the owning user or team needs no AppendTo.
        if any(column_name != "ownerid" for column_name in binds):
            require_privilege(self.store, user, "Append", table)
        for column_name, (target, target_id) in binds.items():
            if column_name != "ownerid" and target_id is not None and target != "systemuser":
                require_privilege(self.store, user, "AppendTo", schema.TABLES[target])
        if values_owner_change:
            require_privilege(self.store, user, "Assign", table)

    def _return_representation(self, request):
        return parse_prefer(request.header("Prefer", "")).get("return") == "representation"

    def _duplicate_detection(self, request, table, record):
        """Run the default duplicate rules when the client turns detection on."""
        if request.header("MSCRM.SuppressDuplicateDetection", "").lower() != "false":
            return
        column = {"lead": "emailaddress1", "contact": "emailaddress1", "account": "name"}.get(
            table.logical_name
        )
        value = record.get(column) if column else None
        if not value:
            return
        for other in self.store.records(table.logical_name):
            same_record = other[table.primary_key] == record[table.primary_key]
            if not same_record and (other.get(column) or "").casefold() == value.casefold():
                raise DataverseError(
                    500, "0x80040333",
                    "A record was not created or updated because a duplicate of the current "
                    "record already exists.",
                )

    def create(self, request, user, table):
        self._check_write(table)
        require_privilege(self.store, user, "Create", table)
        options = self._options(request, table, {"$select"})
        values, binds = self._read_body(request, table, creating=True)
        owner = binds.get("ownerid")
        self._check_binds(user, table, binds, owner is not None and owner[1] != user["systemuserid"])
        record_id = values.pop(table.primary_key, None) or new_id()
        return self._insert(request, user, table, record_id, values, binds, options, 201)

    def _insert(self, request, user, table, record_id, values, binds, options, created_status):
        with self.store.transaction():
            record = new_record(self.store, table, record_id, values, binds, user)
            self._duplicate_detection(request, table, record)
            try:
                self.store.insert(table.logical_name, record)
            except sqlite3.IntegrityError:
                raise duplicate_key() from None
        logger.info("Created %s %s for user %s", table.logical_name, record_id, user["systemuserid"])
        return self._write_result(request, table, record, options, created_status)

    def _write_result(self, request, table, record, options, status_with_body):
        entity_id = f"{request.base_url}{API_PREFIX}{table.entity_set}({record[table.primary_key]})"
        if self._return_representation(request):
            payload = {"@odata.context": f"{request.base_url}{API_PREFIX}$metadata#"
                                         f"{table.entity_set}/$entity"}
            annotations, applied = included_annotations(request)
            payload.update(serialize(table, record, options["select"], annotations))
            headers = {"Preference-Applied": "return=representation", "ETag": etag(record)}
            _add_preference(headers, applied)
            response = json_result(status_with_body, payload, headers)
            response.entity_id = entity_id
            return response
        return Response(
            204, b"", {"OData-Version": "4.0", "OData-EntityId": entity_id}, entity_id=entity_id
        )

    def update(self, request, user, table, record_id):
        self._check_write(table)
        options = self._options(request, table, {"$select"})
        if_match = request.header("If-Match")
        if_none_match = request.header("If-None-Match")
        if if_none_match is not None and if_none_match.strip() != "*":
            raise DataverseError(400, "0x0", "If-None-Match supports only '*' on PATCH.")
        values, binds = self._read_body(request, table, creating=False)
        body_id = values.pop(table.primary_key, None)
        if body_id is not None and body_id != record_id:
            raise DataverseError(
                400, "0x0",
                f"The key in the URL ({record_id}) and the '{table.primary_key}' in the body "
                f"({body_id}) do not match.",
            )

        with self.store.transaction():
            existing = self.store.get(table.logical_name, record_id)
            if existing is None:
                if if_match is not None:
                    raise not_found(table, record_id)
                # Upsert: the record is created with the values of the update.
                require_privilege(self.store, user, "Create", table)
                creatable = {}
                for name, value in values.items():
                    column = table.column_by_value_name(name)
                    if not column.valid_for_create:
                        raise DataverseError(
                            400, "0x80048408",
                            f"The '{name}' attribute is not valid for create on the "
                            f"'{table.logical_name}' entity.",
                        )
                    creatable[name] = value
                owner = binds.get("ownerid")
                self._check_binds(
                    user, table, binds, owner is not None and owner[1] != user["systemuserid"]
                )
                return self._insert(request, user, table, record_id, creatable, binds, options, 201)

            if if_none_match is not None:
                raise duplicate_key()
            if if_match is not None and if_match.strip() != "*" and if_match.strip() != etag(existing):
                raise DataverseError(
                    412, "0x80060882",
                    "The version of the existing record doesn't match the RowVersion property "
                    "provided.",
                )
            require_privilege(self.store, user, "Write", table)
            owner = binds.get("ownerid")
            self._check_binds(
                user, table, binds,
                owner is not None and owner[1] != existing.get("_ownerid_value"),
            )
            updated = apply_update(self.store, table, existing, values, binds, user)
            self._duplicate_detection(request, table, updated)
            self.store.replace(table.logical_name, updated)
        logger.info("Updated %s %s for user %s", table.logical_name, record_id, user["systemuserid"])
        return self._write_result(request, table, updated, options, 200)

    def delete(self, request, user, table, record_id):
        self._check_write(table)
        require_privilege(self.store, user, "Delete", table)
        self._options(request, table, set())
        with self.store.transaction():
            if self.store.get(table.logical_name, record_id) is None:
                raise not_found(table, record_id)
            self.store.delete(table.logical_name, record_id)
        logger.info("Deleted %s %s for user %s", table.logical_name, record_id, user["systemuserid"])
        return Response(204, b"", {"OData-Version": "4.0"})

    def retrieve_user_privileges(self, request, user, record_id):
        require_privilege(self.store, user, "Read", schema.SYSTEMUSER)
        if self.store.get("systemuser", record_id) is None:
            raise not_found(schema.SYSTEMUSER, record_id)
        names = sorted(seed.privileges_of_roles(self.store.role_ids_of_user(record_id)))
        return json_result(200, {
            "@odata.context": f"{request.base_url}{API_PREFIX}$metadata"
                              "#Microsoft.Dynamics.CRM.RetrieveUserPrivilegesResponse",
            "RolePrivileges": [
                {
                    # NOTE: the sandbox grants every privilege at Global depth; it does not
                    # limit reads or writes to the user's own records or business unit.
                    "Depth": "Global",
                    "PrivilegeId": seed.privilege_id(name),
                    "BusinessUnitId": seed.BUSINESS_UNIT_ID,
                    "PrivilegeName": name,
                }
                for name in names
            ],
        })

    def attribute_metadata(self, request, key, rest):
        match = re.fullmatch(r"LogicalName='([a-z_]+)'", key)
        table = schema.TABLES.get(match.group(1)) if match else None
        if table is None:
            raise DataverseError(
                404, "0x80040217",
                f"Could not find entity with key {key}. Use LogicalName='<logical name>'.",
            )
        if not rest or rest[0] != "Attributes" or len(rest) > 2:
            raise _not_found_segment(rest[0] if rest else f"EntityDefinitions({key})")
        attribute_type = None
        if len(rest) == 2:
            if rest[1] == "Microsoft.Dynamics.CRM.StringAttributeMetadata":
                attribute_type = (schema.STRING,)
            elif rest[1] == "Microsoft.Dynamics.CRM.MemoAttributeMetadata":
                attribute_type = (schema.MEMO,)
            else:
                raise _not_found_segment(rest[1])

        properties = ["LogicalName", "AttributeType", "DisplayName", "RequiredLevel",
                      "MaxLength", "IsValidForCreate", "IsValidForUpdate", "Targets"]
        select = None
        for name, value in request.query_pairs():
            if name == "$select":
                select = value.split(",")
            elif name.startswith("$") and name != "$filter":
                raise DataverseError(400, "0x0", f"The query parameter '{name}' is not supported.")
        for name in select or []:
            if name not in properties or (name == "MaxLength" and attribute_type is None):
                raise DataverseError(
                    400, "0x0",
                    f"Could not find a property named '{name}' on type "
                    "'Microsoft.Dynamics.CRM.AttributeMetadata'.",
                )

        items = []
        for column in table.columns.values():
            if attribute_type is not None and column.type not in attribute_type:
                continue
            item = {
                "LogicalName": column.name,
                "AttributeType": column.type,
                "DisplayName": {"UserLocalizedLabel": {
                    "Label": column.display_name or column.name, "LanguageCode": 1033,
                }} if column.display_name else {"UserLocalizedLabel": None},
                "RequiredLevel": {"Value": column.required_level, "CanBeChanged": True},
                "IsValidForCreate": column.valid_for_create,
                "IsValidForUpdate": column.valid_for_update,
            }
            if attribute_type is not None:
                item["MaxLength"] = column.max_length
            if column.is_lookup:
                item["Targets"] = column.targets
            if select is not None:
                item = {name: item.get(name) for name in select}
            item["MetadataId"] = str(_metadata_id(table, column))
            items.append(item)

        return json_result(200, {
            "@odata.context": f"{request.base_url}{API_PREFIX}$metadata#EntityDefinitions"
                              f"('{table.logical_name}')/Attributes",
            "value": items,
        })


def _injected_transient_error():
    # NOTE: the code and message of Dataverse's transient 503 responses are unconfirmed.
    # Clients should retry on the status, not on this text.
    return DataverseError(
        503, "0x80040216",
        "The service is temporarily unavailable. Try the request again later.",
    )


def _sleep_ms(milliseconds):
    if milliseconds > 0:
        time.sleep(milliseconds / 1000)


def _metadata_id(table, column):
    return uuid.uuid5(uuid.NAMESPACE_URL, f"sandbox:{table.logical_name}.{column.name}")


def _split_segments(relative):
    """Split a path on '/' outside quotes and parentheses."""
    segments, current, depth, quoted = [], [], 0, False
    for character in relative:
        if character == "'":
            quoted = not quoted
        elif not quoted and character == "(":
            depth += 1
        elif not quoted and character == ")":
            depth -= 1
        if character == "/" and depth == 0 and not quoted:
            segments.append("".join(current))
            current = []
        else:
            current.append(character)
    if current:
        segments.append("".join(current))
    return segments


def _unauthorized(challenge):
    return DataverseError(401, "", "", challenge)


def _require_method(request, method):
    if request.method != method:
        raise _method_not_allowed(request.method)


def _method_not_allowed(method):
    return DataverseError(405, "0x0", f"The HTTP method '{method}' is not allowed on this resource.")


def _parse_select(table, text):
    if text is None:
        return None
    names = [name.strip() for name in text.split(",")]
    for name in names:
        if not name or table.column_by_value_name(name) is None:
            raise DataverseError(
                400, "0x0",
                f"Could not find a property named '{name}' on type '{table.type_name}'.",
            )
    return names


def _parse_expand(table, text):
    """Return the $select of the expanded roles (None if no $expand) or raise 400."""
    if text is None:
        return None
    match = _EXPAND.match(text.strip())
    name = match.group("name") if match else text.strip()
    if match is None or table is not schema.SYSTEMUSER or name != schema.USER_ROLES_NAVIGATION:
        raise DataverseError(
            400, "0x0",
            f"Could not find a property named '{name}' on type '{table.type_name}'. The "
            f"sandbox expands only systemusers/{schema.USER_ROLES_NAVIGATION}.",
        )
    return _parse_select(schema.ROLE, match.group("select")) if match.group("select") else None


def _parse_top(text):
    # ASCII digits only, and at most 10 so that int() stays cheap. $top is an Edm.Int32.
    if not re.fullmatch(r"[0-9]{1,10}", text or "") or not 1 <= int(text) <= MAX_INT32:
        raise DataverseError(
            400, "0x0", f"Invalid value '{text[:40]}' for $top query option found. The $top "
                        f"query option requires a positive integer up to {MAX_INT32}.",
        )
    return int(text)


def _max_page_size(request):
    for preference in request.header("Prefer", "").split(","):
        name, _, value = preference.strip().partition("=")
        if name == "odata.maxpagesize":
            # str.isdigit() would accept digits such as '²' that int() rejects.
            if not re.fullmatch(r"[0-9]{1,10}", value) or not 1 <= int(value) <= MAX_PAGE_SIZE:
                raise DataverseError(
                    400, "0x0",
                    f"The odata.maxpagesize preference '{value[:40]}' is not valid. Use a "
                    f"number from 1 to {MAX_PAGE_SIZE}.",
                )
            return int(value)
    return None


def _order(rows, table, text):
    keys = []
    for clause in text.split(","):
        parts = clause.strip().split()
        if not parts or len(parts) > 2 or (len(parts) == 2 and parts[1] not in ("asc", "desc")):
            raise DataverseError(400, "0x0", f"The $orderby clause '{clause}' is not valid.")
        column = table.column_by_value_name(parts[0])
        if column is None:
            raise DataverseError(
                400, "0x0",
                f"Could not find a property named '{parts[0]}' on type '{table.type_name}'.",
            )
        keys.append((column.value_name, len(parts) == 2 and parts[1] == "desc"))
    # Stable sorts applied from the last key to the first give a multi-key order.
    # Nulls sort first in ascending order, as in SQL Server.
    for name, descending in reversed(keys):
        rows = sorted(rows, key=lambda row: _sort_key(row.get(name)), reverse=descending)
    return rows


def _sort_key(value):
    if value is None:
        return (0, "")
    if isinstance(value, str):
        return (1, value.casefold())
    return (1, value)


def _next_link(request, page, offset):
    # NOTE: Dataverse's skiptoken is a paging cookie keyed on the last record's id. The
    # sandbox keeps a row offset instead, so rows created between pages can shift it.
    pairs = [(name, value) for name, value in request.query_pairs() if name != "$skiptoken"]
    pairs.append(("$skiptoken", f'<cookie pagenumber="{page}" offset="{offset}" />'))
    query = "&".join(f"{quote(name, safe='$')}={quote(value, safe='')}" for name, value in pairs)
    return f"{request.base_url}{request.path}?{query}"
