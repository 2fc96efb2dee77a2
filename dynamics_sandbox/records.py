"""Record rules of the Web API: payload validation, lookups, privileges, serialization.

Error codes and messages are the ones Dataverse returns for the same mistake.
"""

import json
import re
import uuid

from . import schema, seed
from .store import utc_now_text

GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
# Instance annotation on a lookup value that names the table the value points to.
LOOKUP_LOGICAL_NAME = "Microsoft.Dynamics.CRM.lookuplogicalname"
# Maximum nesting of arrays and objects in a JSON request body. The sandbox's record
# bodies are flat objects. NOTE: Dataverse's own limit and its error message are
# unconfirmed.
MAX_JSON_DEPTH = 32
_BIND_VALUE = re.compile(r"^(?:https?://[^/]+/api/data/v9\.2)?/?(?P<set>[A-Za-z_]+)\((?P<id>[^)]*)\)$")


class DataverseError(Exception):
    """An error sent as {"error": {"code": ..., "message": ...}}."""

    def __init__(self, status, code, message, headers=None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def not_found(table, record_id):
    return DataverseError(
        404, "0x80040217", f"Entity '{table.logical_name}' With Id = {record_id} Does Not Exist"
    )


def duplicate_key():
    # NOTE: Dataverse's error code for an existing key on create is unconfirmed; the
    # message is the documented one.
    return DataverseError(412, "0x80040237", "A record with matching key values already exists.")


def invalid_property(table, name):
    message = f"Invalid property '{name}' was found in entity '{table.type_name}'."
    return DataverseError(
        400, "0x0",
        "An error occurred while validating input parameters: Microsoft.Crm.CrmException: "
        f"{message} ---> Microsoft.Crm.CrmException: {message}",
    )


def undeclared_navigation(table, navigation):
    return DataverseError(
        400, "0x80048d19",
        f"Error identified in Payload provided by the user for Entity :'{table.entity_set}', "
        "For more information on this error please follow this help link "
        "https://go.microsoft.com/fwlink/?linkid=2195293  ----> InnerException : "
        f"Microsoft.OData.ODataException: An undeclared property '{navigation}' which only "
        "has property annotations in the payload but no property value was found in the "
        "payload. In OData, only declared navigation properties and declared named streams "
        "can be represented as properties without values.",
    )


def parse_json_body(body):
    """Decode a UTF-8 JSON request body, or raise a 400 DataverseError.

    Reject what JSON or OData forbids but Python's json module accepts: NaN and
    Infinity, and a property name used twice in one object. Reject nesting deeper than
    MAX_JSON_DEPTH, and numbers too long for int() (over 4300 digits).
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise _invalid_json(f"it is not UTF-8 ({error})") from None
    try:
        payload = json.loads(
            text or "null",
            parse_constant=_reject_json_constant,
            object_pairs_hook=_object_without_duplicates,
        )
    except RecursionError:
        raise _too_deep() from None
    except ValueError as error:  # Also json.JSONDecodeError.
        raise _invalid_json(str(error)) from None
    if _json_depth(payload) > MAX_JSON_DEPTH:
        raise _too_deep()
    return payload


def _invalid_json(reason):
    return DataverseError(400, "0x0", f"The request body is not valid JSON: {reason}.")


def _too_deep():
    return DataverseError(
        400, "0x0",
        f"The request body nests arrays and objects more than {MAX_JSON_DEPTH} levels "
        "deep. Send a record as one JSON object of its columns.",
    )


def _reject_json_constant(name):
    raise ValueError(f"'{name}' is not a JSON value")


def _object_without_duplicates(pairs):
    payload = {}
    for name, value in pairs:
        if name in payload:
            raise ValueError(f"the property '{name}' appears more than once in one object")
        payload[name] = value
    return payload


def _json_depth(payload):
    """Return the nesting depth of arrays and objects in `payload`, without recursion."""
    deepest = 0
    stack = [(payload, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in children)
    return deepest


def parse_guid(text):
    """Return a lower-case GUID or raise a 400 for malformed text."""
    if not isinstance(text, str) or not GUID.match(text):
        raise DataverseError(
            400, "0x0", f"Unrecognized 'Edm.Guid' literal '{text}' in the request."
        )
    return text.lower()


# Privileges

def require_privilege(store, user, action, table):
    """Raise 403 unless the user's roles grant prv<action><entity> on `table`."""
    name = f"prv{action}{table.privilege_entity}"
    role_ids = store.role_ids_of_user(user["systemuserid"])
    granted = seed.privileges_of_roles(role_ids)
    if name in granted:
        return
    user_id = user["systemuserid"]
    raise DataverseError(
        403, "0x80040220",
        f"Principal user (Id={user_id}, type=8, roleCount={len(role_ids)}, "
        f"privilegeCount={len(granted)}, accessMode={user.get('accessmode') or 0}, "
        "MetadataCachePrivilegesCount=0, "
        f"businessUnitId={seed.BUSINESS_UNIT_ID}), is missing {name} privilege "
        f"(Id={seed.privilege_id(name)}) on OTC={table.object_type_code} for entity "
        f"'{table.logical_name}'. context.Caller={user_id}",
    )


# Payload validation

def _check_value(table, column, value):
    """Return the value to store for `column`, or raise the Dataverse error."""
    if value is None:
        return None
    edm = column.edm_type
    if column.type in (schema.STRING, schema.MEMO):
        if not isinstance(value, str):
            raise _conversion_error(value, edm)
        if value == "":
            return None  # Dataverse stores an empty string as null.
        # Dataverse counts .NET characters, which are UTF-16 code units.
        length = len(value.encode("utf-16-le")) // 2
        if column.max_length is not None and length > column.max_length:
            raise DataverseError(
                400, "0x80044331",
                f"A validation error occurred.  The length of the '{column.name}' attribute "
                f"of the '{table.logical_name}' entity exceeded the maximum allowed length "
                f"of '{column.max_length}'.",
            )
        return value
    if column.type == schema.BOOLEAN:
        if not isinstance(value, bool):
            raise _conversion_error(value, edm)
        return value
    if column.type in (schema.INTEGER, schema.BIGINT, schema.PICKLIST, schema.STATE, schema.STATUS):
        if isinstance(value, bool) or not isinstance(value, int):
            raise _conversion_error(value, edm)
        if column.options and value not in column.options:
            accepted = ",".join(str(option) for option in column.options)
            raise DataverseError(
                400, "0x8004431a",
                f"A validation error occurred. The value {value} of '{column.name}' on record "
                f"of type '{table.logical_name}' is outside the valid range. "
                f"Accepted Values: {accepted}",
            )
        return value
    if column.type == schema.UNIQUEIDENTIFIER:
        if not isinstance(value, str) or not GUID.match(value):
            raise _conversion_error(value, edm)
        return value.lower()
    if column.type == schema.DATETIME:
        if not isinstance(value, str):
            raise _conversion_error(value, edm)
        return value
    raise _conversion_error(value, edm)


def _conversion_error(value, edm_type):
    return DataverseError(
        400, "0x0",
        f"Cannot convert the literal '{value}' to the expected type '{edm_type}'.",
    )


def parse_payload(store, table, payload, creating):
    """Validate a create or update body.

    Return (values, binds) where values maps Web API property names to values and binds
    maps a lookup column to (target table, id or None).
    """
    if not isinstance(payload, dict):
        raise DataverseError(
            400, "0x0", "The request body must be a JSON object with the record's columns."
        )
    values = {}
    binds = {}
    for key, value in payload.items():
        if key == "@odata.type":
            if value not in (table.type_name, f"#{table.type_name}"):
                raise DataverseError(
                    400, "0x0",
                    f"A resource with type '{value}' was found, but it is not assignable to "
                    f"the expected type '{table.type_name}'.",
                )
            continue
        if key.endswith("@odata.bind"):
            navigation = key[: -len("@odata.bind")]
            column, target = _bind_target(table, navigation)
            if column.name in binds:
                raise DataverseError(
                    400, "0x0",
                    f"The lookup '{column.name}' is bound more than once in one request.",
                )
            binds[column.name] = _resolve_bind(store, navigation, target, value)
            continue
        if "@" in key:
            raise invalid_property(table, key)
        column = table.columns.get(key)
        if column is None:
            raise invalid_property(table, key)
        if column.is_lookup:
            # A navigation property given a plain value instead of an @odata.bind.
            raise DataverseError(
                400, "0x0",
                "An error occurred while validating input parameters: "
                "Microsoft.OData.ODataException: Does not support untyped value in "
                f"non-open type. Bind the lookup '{key}' with '{key}@odata.bind' or one of "
                f"its navigation properties: {', '.join(column.navigations)}.",
            )
        allowed = column.valid_for_create if creating else column.valid_for_update
        if not allowed:
            if key == table.primary_key and not creating:
                values[key] = _check_value(table, column, value)
                continue
            operation = "create" if creating else "update"
            # NOTE: the exact Dataverse code and message for a column that is not valid
            # for the operation are unconfirmed.
            raise DataverseError(
                400, "0x80048408",
                f"The '{key}' attribute is not valid for {operation} on the "
                f"'{table.logical_name}' entity.",
            )
        values[key] = _check_value(table, column, value)
    return values, binds


def _bind_target(table, navigation):
    found = table.lookup_by_navigation(navigation)
    if found is None or not found[0].valid_for_create:
        raise undeclared_navigation(table, navigation)
    return found


def _resolve_bind(store, navigation, target_names, value):
    """Check a bind value such as `/accounts(<id>)`.

    `target_names` is the logical name of the target table, or a tuple of them for the
    owner lookup. Return (logical name of the bound table, target id), where the id is
    None when the value is null.
    """
    if isinstance(target_names, str):
        target_names = (target_names,)
    targets = [schema.TABLES[name] for name in target_names if name in schema.TABLES]
    expected = " or ".join(f"'/{target.entity_set}(<guid>)'" for target in targets)
    if value is None:
        return target_names[0], None
    match = _BIND_VALUE.match(value) if isinstance(value, str) else None
    if match is None or not targets:
        raise DataverseError(
            400, "0x0",
            f"The value '{value}' of '{navigation}@odata.bind' is not a valid entity "
            f"reference. Use {expected or repr(target_names[0])}.",
        )
    target = next((table for table in targets if table.entity_set == match.group("set")), None)
    if target is None:
        sets = " or ".join(f"'{table.entity_set}'" for table in targets)
        raise DataverseError(
            400, "0x0",
            f"The navigation property '{navigation}' expects a reference to the entity set "
            f"{sets}, but '{match.group('set')}' was given.",
        )
    target_id = parse_guid(match.group("id"))
    if store.get(target.logical_name, target_id) is None:
        raise not_found(target, target_id)
    return target.logical_name, target_id


def compose_fullname(record):
    parts = [record.get("firstname"), record.get("lastname")]
    return " ".join(part for part in parts if part) or None


def new_record(store, table, record_id, values, binds, user):
    """Build a record to insert from validated values."""
    record = {column.value_name: None for column in table.columns.values()}
    record.update(values)
    _apply_binds(record, binds)
    now = utc_now_text()
    record[table.primary_key] = record_id
    record["createdon"] = now
    record["modifiedon"] = now
    record["_createdby_value"] = user["systemuserid"]
    record["_modifiedby_value"] = user["systemuserid"]
    if "ownerid" in table.columns and record.get("_ownerid_value") is None:
        _apply_binds(record, {"ownerid": ("systemuser", user["systemuserid"])})
    if "statecode" in table.columns:
        record["statecode"] = 0
        if record.get("statuscode") is None:
            record["statuscode"] = table.default_status[0]
        _check_status(table, record)
    if table.primary_name == "fullname" and "firstname" in table.columns:
        record["fullname"] = compose_fullname(record)
    record["versionnumber"] = store.next_version()
    return record


def apply_update(store, table, record, values, binds, user):
    """Return the updated copy of `record`."""
    updated = dict(record)
    updated.update(values)
    _apply_binds(updated, binds)
    if "statecode" in values and "statuscode" not in values:
        updated["statuscode"] = table.default_status[updated["statecode"]]
    if "statecode" in table.columns:
        _check_status(table, updated)
    if table.primary_name == "fullname" and "firstname" in table.columns:
        updated["fullname"] = compose_fullname(updated)
    updated["modifiedon"] = utc_now_text()
    updated["_modifiedby_value"] = user["systemuserid"]
    updated["versionnumber"] = store.next_version()
    return updated


def lookup_type_key(value_name):
    """Return the record key that stores the table a lookup value points to."""
    return f"{value_name}@{LOOKUP_LOGICAL_NAME}"


def _apply_binds(record, binds):
    """Set the lookup values of `binds`, each with the logical name of its target.

    Setting ownerid also sets owninguser or owningteam, as Dataverse does.
    """
    for column_name, (target, target_id) in binds.items():
        value_name = f"_{column_name}_value"
        record[value_name] = target_id
        record[lookup_type_key(value_name)] = target if target_id is not None else None
        if column_name == "ownerid":
            record["_owninguser_value"] = target_id if target == "systemuser" else None
            record["_owningteam_value"] = target_id if target == "team" else None
            record[lookup_type_key("_owninguser_value")] = (
                "systemuser" if target == "systemuser" and target_id else None
            )
            record[lookup_type_key("_owningteam_value")] = (
                "team" if target == "team" and target_id else None
            )


def _check_status(table, record):
    """Reject a statuscode that does not belong to the record's statecode."""
    state, status = record["statecode"], record["statuscode"]
    if state is None or status is None:
        raise DataverseError(
            400, "0x80040203", "statecode and statuscode cannot be null."
        )
    allowed = [
        code for code in table.columns["statuscode"].options
        if _state_of_status(table, code) == state
    ]
    if status not in allowed:
        raise DataverseError(
            400, "0x8004431a",
            f"{status} is not a valid status code for state code "
            f"{table.logical_name}State.{table.columns['statecode'].options[state]} on "
            f"{table.logical_name} with Id {record[table.primary_key]}.",
        )


# Status reasons per state, for the tables that have a statecode.
_STATUS_STATES = {
    "lead": {1: 0, 2: 0, 3: 1, 4: 2, 5: 2, 6: 2, 7: 2},
    "contact": {1: 0, 2: 1},
    "account": {1: 0, 2: 1},
}


def _state_of_status(table, status):
    return _STATUS_STATES[table.logical_name].get(status)


def etag(record):
    return f'W/"{record["versionnumber"]}"'


def lookup_logical_name(table, record, column):
    """Return the logical name of the table that a lookup value points to, or None."""
    if record.get(column.value_name) is None:
        return None
    stored = record.get(lookup_type_key(column.value_name))
    if stored:
        return stored
    # Records written before the sandbox stored lookup types: a single-target lookup
    # can only point to its one target, and an owner without owningteam is a user.
    if column.type == schema.OWNER:
        return "team" if record.get("_owningteam_value") else "systemuser"
    targets = column.targets
    return targets[0] if len(targets) == 1 else None


def serialize(table, record, select=None, annotations=None):
    """Return the record as the Web API does: @odata.etag, then the selected columns.

    `annotations` is a predicate on annotation names, from the request's
    `Prefer: odata.include-annotations`. Lookup values then carry the
    `@Microsoft.Dynamics.CRM.lookuplogicalname` annotation when it is included.
    """
    output = {"@odata.etag": etag(record)}
    if select is None:
        names = [column.value_name for column in table.columns.values()]
    else:
        names = [table.primary_key] + [name for name in select if name != table.primary_key]
    with_lookup_types = annotations is not None and annotations(LOOKUP_LOGICAL_NAME)
    for name in names:
        output[name] = record.get(name)
        column = table.column_by_value_name(name)
        if with_lookup_types and column is not None and column.is_lookup:
            logical_name = lookup_logical_name(table, record, column)
            if logical_name is not None:
                output[lookup_type_key(name)] = logical_name
    return output


def new_id():
    return str(uuid.uuid4())
