import pytest
from django.core.exceptions import ValidationError

from integrations.field_mappings import create_default_mappings, rules_for, validate_mapping
from integrations.models import FieldMapping
from integrations.sync import mappings

pytestmark = pytest.mark.django_db


def check(metadata, **fields):
    values = {"entity": "lead", "column": "jobtitle", "source": "job_title",
              "fixed_value": "", "mode": "overwrite"}
    values.update(fields)
    validate_mapping(metadata, **values)


def error_of(metadata, **fields):
    with pytest.raises(ValidationError) as raised:
        check(metadata, **fields)
    return raised.value.message_dict


def test_valid_mapping_passes(connected_team):
    check(connected_team.integration.dynamics_metadata)


def test_unknown_column_named(connected_team):
    errors = error_of(connected_team.integration.dynamics_metadata, column="jobtitel")
    assert "no column 'jobtitel'" in errors["column"][0]


def test_read_only_column_rejected(connected_team):
    errors = error_of(connected_team.integration.dynamics_metadata, column="fullname")
    assert "read-only" in errors["column"][0]


def test_picklist_needs_number(connected_team):
    errors = error_of(connected_team.integration.dynamics_metadata,
                      column="leadsourcecode", source="", fixed_value="Trade Show")
    assert "numeric value" in errors["fixed_value"][0]


def test_picklist_number_passes(connected_team):
    check(connected_team.integration.dynamics_metadata, column="leadsourcecode", source="",
          fixed_value="7")


def test_source_and_fixed_value_exclusive():
    errors = error_of({}, fixed_value="x")
    assert "not both" in errors["source"][0]


def test_unknown_source_rejected():
    errors = error_of({}, source="shoe_size")
    assert "shoe_size" in errors["source"][0]


def test_owner_fixed_value_format():
    errors = error_of({}, column="ownerid", source="", fixed_value="team:Sales")
    assert "team:<team id>" in errors["fixed_value"][0]


def test_owner_team_guid_passes():
    check({}, column="ownerid", source="",
          fixed_value="team:00000000-0000-4000-8000-000000000001")


def test_member_only_maps_to_owner():
    errors = error_of({}, source=mappings.OWNER_SOURCE)
    assert "ownerid" in errors["source"][0]


def test_append_only_on_text(connected_team):
    errors = error_of(connected_team.integration.dynamics_metadata,
                      column="leadsourcecode", source="", fixed_value="7", mode="append")
    assert "text columns" in errors["mode"][0]


def test_defaults_created_once(connected_team):
    integration = connected_team.integration
    count = FieldMapping.objects.filter(integration=integration).count()
    create_default_mappings(integration)
    assert count == len(mappings.DEFAULT_MAPPINGS)
    assert FieldMapping.objects.filter(integration=integration).count() == count


def test_rules_follow_saved_rows(connected_team):
    integration = connected_team.integration
    FieldMapping.objects.filter(integration=integration, column="jobtitle",
                                entity="lead").update(mode="append")
    rule = next(rule for rule in rules_for(integration)
                if rule.entity == "lead" and rule.column == "jobtitle")
    assert rule.mode == "append"
