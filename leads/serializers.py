from collections.abc import Mapping

from rest_framework import serializers

from .models import Lead
from .services import CAPTURE_FIELDS, validate_identifying_fields

# Form keys that are not lead fields. The browsable API's HTML form sends the CSRF token.
IGNORED_INPUT_KEYS = {"csrfmiddlewaretoken"}
# Fields the integration writes. Clients may send them back, and they are ignored.
SYNC_FIELDS = (
    "sync_status", "dynamics_entity", "dynamics_record_id",
    "last_sync_error", "last_synced_at", "captured_at",
)
# Lead ids per bulk sync request, which keeps one request's permission checks short.
MAX_SYNC_IDS = 1000


class LeadSerializer(serializers.ModelSerializer):
    """A captured lead with its sync state.

    On input, `team` (an id) is optional, and a field name the serializer does not
    know is rejected with 400, so that a typo such as `emial` is not silently lost.
    """

    # Any integer is accepted here and checked against the caller's teams by the capture
    # service, so the answer for a team that does not exist and for someone else's team
    # is the same, and team ids cannot be probed.
    team = serializers.IntegerField(required=False, write_only=True)

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

    def validate_website(self, value):
        """Accept a domain or an http(s) URL; other schemes (javascript:, data:) could run
        code where Dynamics or this admin shows the website as a link."""
        value = value.strip()
        if not value:
            return value
        scheme, separator, _ = value.partition(":")
        has_scheme = separator and scheme.isalpha() and not _.startswith(tuple("0123456789"))
        if has_scheme and scheme.lower() not in ("http", "https"):
            raise serializers.ValidationError(
                f"Invalid website '{value[:100]}': use a domain such as example.com or an "
                f"http(s) URL."
            )
        return value

    def validate(self, attrs):
        validate_identifying_fields(attrs)
        return attrs

    def to_representation(self, instance):
        data = super().to_representation(instance)
        data["team"] = instance.team_id
        return data


class SyncRequestSerializer(serializers.Serializer):
    """The body of a bulk sync request: `{"ids": [lead id, ...]}`."""

    # One request may queue up to MAX_SYNC_IDS leads; an admin with more sends several.
    ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1), allow_empty=False,
        max_length=MAX_SYNC_IDS,
    )
