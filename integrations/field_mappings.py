"""Saving and checking an integration's field mappings.

A mapping is checked against the org's column metadata when it is saved, so a typo such
as "jobtitel" is rejected with a message that names it instead of failing every sync.
"""

import re

from django.core.exceptions import ValidationError
from django.db import transaction

from .models import FieldMapping
from .sync import mappings
from .sync.engine import OWNER_SETS

_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
TEXT_TYPES = {"String", "Memo"}
NUMBER_TYPES = {"Picklist", "Integer", "BigInt"}


def create_default_mappings(integration):
    """Give a new integration the default mappings; existing ones are kept."""
    with transaction.atomic():
        for position, rule in enumerate(mappings.DEFAULT_MAPPINGS):
            FieldMapping.objects.get_or_create(
                integration=integration, entity=rule.entity, column=rule.column,
                defaults={"source": rule.source, "fixed_value": rule.fixed_value,
                          "mode": rule.mode, "position": position},
            )


def rules_for(integration):
    """Return the integration's mappings as engine rules (the defaults when it has none)."""
    rows = list(integration.field_mappings.all())
    if not rows:
        return tuple(mappings.DEFAULT_MAPPINGS)
    return tuple(
        mappings.MappingRule(entity=row.entity, column=row.column, source=row.source,
                             fixed_value=row.fixed_value, mode=row.mode)
        for row in rows
    )


def validate_mapping(metadata, *, entity, column, source, fixed_value, mode):
    """Raise ValidationError, keyed by form field, when a mapping cannot work.

    `metadata` is the integration's stored column metadata. Without it (an integration
    that never connected) only the parts that need no metadata are checked.
    """
    column = column.strip()
    if mode not in mappings.MODES:
        raise ValidationError({"mode": f"Unknown mode '{mode}'. Use one of: "
                                       f"{', '.join(mappings.MODES)}."})
    if bool(source) == bool(fixed_value.strip()):
        raise ValidationError({"source": "Choose a lead field or enter a fixed value, "
                                         "not both and not neither."})
    if source and source not in mappings.SOURCE_FIELDS:
        raise ValidationError({"source": f"Unknown lead field '{source}'."})

    if column == mappings.OWNER_COLUMN:
        _validate_owner(source, fixed_value)
        return
    if source == mappings.OWNER_SOURCE:
        raise ValidationError({"source": "The capturing member can only be mapped to the "
                                         "owner column (ownerid)."})

    columns = (metadata or {}).get(entity)
    if not columns:
        return
    if column not in columns:
        raise ValidationError({"column": (
            f"The Dynamics {entity} table has no column '{column}'. Column names are "
            f"logical names in lower case, for example 'jobtitle'."
        )})
    info = columns[column]
    if not info.get("valid_for_create", True) and not info.get("valid_for_update", True):
        raise ValidationError({"column": f"Dynamics does not allow writing '{column}' "
                                         f"on {entity}: it is read-only."})
    column_type = info.get("type")
    if column_type in NUMBER_TYPES:
        if source or not fixed_value.strip().lstrip("-").isdigit():
            raise ValidationError({"fixed_value": (
                f"'{column}' is a {column_type} column: enter its numeric value as a "
                f"fixed value, for example 7 for Trade Show in leadsourcecode."
            )})
    elif column_type not in TEXT_TYPES:
        raise ValidationError({"column": (
            f"'{column}' is a {column_type} column; mappings can write text, memo, "
            f"choice and number columns, and the owner."
        )})
    if mode == mappings.APPEND and column_type not in TEXT_TYPES:
        raise ValidationError({"mode": "Append works only on text columns."})


def _validate_owner(source, fixed_value):
    if source == mappings.OWNER_SOURCE:
        return
    kind, _, owner_id = fixed_value.strip().partition(":")
    if source or kind not in OWNER_SETS or not _GUID.match(owner_id.strip()):
        raise ValidationError({"fixed_value": (
            "The owner is either the capturing member (lead field 'Capturing member as "
            "owner') or a fixed value 'team:<team id>' or 'user:<user id>' with a "
            "Dynamics GUID."
        )})
