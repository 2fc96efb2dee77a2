from collections.abc import Mapping

from rest_framework import serializers

from teams.models import Team

from .models import Lead
from .services import CAPTURE_FIELDS, validate_identifying_fields

# Form keys that are not lead fields. The browsable API's HTML form sends the CSRF token.
IGNORED_INPUT_KEYS = {"csrfmiddlewaretoken"}
# Fields the integration writes. Clients may send them back, and they are ignored.
SYNC_FIELDS = (
    "sync_status", "dynamics_entity", "dynamics_record_id",
    "last_sync_error", "last_synced_at", "captured_at",
)


class LeadSerializer(serializers.ModelSerializer):
    """A captured lead with its sync state.

    On input, `team` (an id) is optional, and a field name the serializer does not
    know is rejected with 400, so that a typo such as `emial` is not silently lost.
    """

    team = serializers.PrimaryKeyRelatedField(queryset=Team.objects.all(), required=False)

    class Meta:
        model = Lead
        fields = ["id", "team", *CAPTURE_FIELDS, *SYNC_FIELDS]
        read_only_fields = ["id", *SYNC_FIELDS]

    def to_internal_value(self, data):
        if isinstance(data, Mapping):
            unknown = sorted(set(data) - set(self.fields) - IGNORED_INPUT_KEYS)
            if unknown:
                allowed = ", ".join(
                    name for name, field in self.fields.items() if not field.read_only
                )
                raise serializers.ValidationError(
                    {name: [f"Unknown field. Allowed fields: {allowed}."] for name in unknown}
                )
        return super().to_internal_value(data)

    def validate(self, attrs):
        validate_identifying_fields(attrs)
        return attrs
