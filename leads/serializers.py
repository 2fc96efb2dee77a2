import unicodedata
from collections.abc import Mapping

from django.core.validators import ProhibitNullCharactersValidator
from django.db import models
from email_validator import EmailNotValidError, validate_email
from rest_framework import serializers

from integrations.sync.normalize import parse_phone

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


# Line breaks and tabs that a multi-line text field (the notes) may contain.
LINE_BREAK_CHARACTERS = frozenset("\n\r\t")
# The character that decoders put where a request's bytes were not valid UTF-8.
REPLACEMENT_CHARACTER = "\ufffd"
CLIENT_ID_MAX_LENGTH = Lead._meta.get_field("client_reference").max_length


def find_invalid_character(value: str, *, allow_line_breaks: bool = False) -> str | None:
    """Return a message about the first control or replacement character in `value`.

    Returns None for plain text. Control characters are Unicode category Cc, which
    includes NUL, DEL and the C1 range.
    """
    for position, character in enumerate(value, start=1):
        if character == REPLACEMENT_CHARACTER:
            return (
                f"Invalid text at position {position}: the request contained bytes that "
                f"are not valid UTF-8. Send the text encoded as UTF-8."
            )
        if allow_line_breaks and character in LINE_BREAK_CHARACTERS:
            continue
        if unicodedata.category(character) == "Cc":
            allowed = " other than line breaks and tabs" if allow_line_breaks else ""
            return (
                f"Control characters{allowed} are not allowed: found U+{ord(character):04X} "
                f"at position {position}."
            )
    return None


class PlainTextField(serializers.CharField):
    """A CharField that rejects control characters, and line breaks unless allowed."""

    def __init__(self, *, allow_line_breaks=False, **kwargs):
        super().__init__(**kwargs)
        self.allow_line_breaks = allow_line_breaks
        # The control character check below covers NUL with a message that names the
        # character, so DRF's own NUL check would only repeat it.
        self.validators = [
            validator for validator in self.validators
            if not isinstance(validator, ProhibitNullCharactersValidator)
        ]

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        problem = find_invalid_character(value, allow_line_breaks=self.allow_line_breaks)
        if problem:
            raise serializers.ValidationError(problem, code="invalid_character")
        return value


class EmailAddressField(PlainTextField):
    """An email address checked for syntax by email-validator and returned normalized.

    The domain is lowercased and the local part keeps its case, as email-validator
    normalizes it. No DNS lookup is made, so a capture works offline.
    """

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        # An overlong address is left to the max_length check, whose message gives the
        # limit.
        if not value or (self.max_length is not None and len(value) > self.max_length):
            return value
        try:
            # Django's EmailValidator on the model field accepts only ASCII before the @,
            # so email-validator rejects other addresses here, with a clearer message.
            result = validate_email(value, check_deliverability=False, allow_smtputf8=False)
        except EmailNotValidError as error:
            raise serializers.ValidationError(
                f"Invalid email address '{value[:100]}': {error}", code="invalid_email"
            ) from error
        return result.normalized


class LeadSerializer(serializers.ModelSerializer):
    """A captured lead with its sync state.

    On input, `team` (an id) is optional, and a field name the serializer does not
    know is rejected with 400, so that a typo such as `emial` is not silently lost.
    """

    # Any integer is accepted here and checked against the caller's teams by the capture
    # service, so the error for a team that does not exist and for someone else's team
    # is the same, and team ids cannot be probed.
    team = serializers.IntegerField(
        required=False, write_only=True,
        help_text="Id of the team the lead is for. Required only for members of several "
                  "teams. Responses contain the lead's team id.",
    )
    client_id = PlainTextField(
        source="client_reference", required=False, allow_blank=True,
        max_length=CLIENT_ID_MAX_LENGTH,
        help_text="The app's own id for this capture, typically a UUID generated on the "
                  "phone. A POST sent again with the same client_id (or Idempotency-Key "
                  "header) returns the first lead with 200 and creates nothing, even if "
                  "the body differs: the first body wins.",
    )
    email = EmailAddressField(
        required=False, allow_blank=True, max_length=Lead._meta.get_field("email").max_length,
        help_text="Checked for syntax only and stored normalized (lowercase domain).",
    )
    phone_e164 = serializers.SerializerMethodField(
        help_text="The phone in international form (E.164), read with the team's default "
                  "region. Empty when the phone is not a phone number: the text is kept "
                  "as entered and skipped when the sync matches Dynamics records.",
    )
    mobile_phone_e164 = serializers.SerializerMethodField(
        help_text="The mobile phone in international form (E.164), or empty, as for "
                  "phone_e164.",
    )

    serializer_field_mapping = {
        **serializers.ModelSerializer.serializer_field_mapping,
        models.CharField: PlainTextField,
        models.TextField: PlainTextField,
    }

    class Meta:
        model = Lead
        fields = [
            "id", "team", "client_id", *CAPTURE_FIELDS, "phone_e164", "mobile_phone_e164",
            "source", *SYNC_FIELDS,
        ]
        read_only_fields = ["id", "source", *SYNC_FIELDS]
        extra_kwargs = {
            "notes": {"allow_line_breaks": True},
            "phone": {"help_text": "Stored as entered (trimmed), even when it is not a "
                                   "phone number."},
            "mobile_phone": {"help_text": "Stored as entered (trimmed), like phone."},
        }

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

    def get_phone_e164(self, lead) -> str:
        return parse_phone(lead.phone, lead.team.default_phone_region)

    def get_mobile_phone_e164(self, lead) -> str:
        return parse_phone(lead.mobile_phone, lead.team.default_phone_region)

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
