"""OpenAPI descriptions of the leads API for drf-spectacular, kept apart from the views."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    inline_serializer,
)
from rest_framework import serializers

from .serializers import LeadSerializer, SyncRequestSerializer

DETAIL = inline_serializer("Detail", {"detail": serializers.CharField()})

FIELD_ERRORS = OpenApiResponse(
    OpenApiTypes.OBJECT,
    description="Invalid input. Each key is a field name (or non_field_errors) and each "
                "value a list of messages for that field.",
    examples=[
        OpenApiExample(
            "Invalid fields",
            value={
                "email": ["Invalid email address 'ada@': There must be something after "
                          "the @-sign."],
                "first_name": ["Ensure this field has no more than 100 characters."],
                "company": ["Control characters are not allowed: found U+0000 at "
                            "position 5."],
            },
            response_only=True,
        ),
    ],
)
UNAUTHENTICATED = OpenApiResponse(DETAIL, description="Missing or invalid token.")
THROTTLED = OpenApiResponse(
    DETAIL,
    description="Too many captures by this member. The lead was not saved: send it again "
                "after the seconds in the Retry-After header.",
)

capture_schema = extend_schema(
    summary="Capture a lead",
    description=(
        "Saves a lead for the caller's team and schedules its sync to Dynamics 365. "
        "A client that may resend the request (for example on a bad connection) sets "
        "client_id or the Idempotency-Key header: a request with a reference that the "
        "caller already used returns the first lead with 200 and creates nothing, even "
        "if its body differs, because the first body wins. Two concurrent requests with "
        "one reference save one lead."
    ),
    parameters=[
        OpenApiParameter(
            "Idempotency-Key", OpenApiTypes.STR, OpenApiParameter.HEADER,
            description="Alternative to client_id, at most 200 characters. When both "
                        "are sent, they must be equal.",
        ),
    ],
    request=LeadSerializer,
    responses={
        201: OpenApiResponse(LeadSerializer, description="The lead was saved."),
        200: OpenApiResponse(
            LeadSerializer,
            description="The caller already sent this client_id or Idempotency-Key, and "
                        "this is the lead the first request saved.",
        ),
        400: FIELD_ERRORS,
        401: UNAUTHENTICATED,
        403: OpenApiResponse(DETAIL, description="The caller belongs to no team."),
        429: THROTTLED,
    },
    examples=[
        OpenApiExample(
            "Lead from a business card",
            value={
                "client_id": "3f2b8a1e-5c47-4d3e-9a60-2b1f0c9d7e45",
                "first_name": "Ada",
                "last_name": "Lovelace",
                "email": "ada@example.org",
                "phone": "(201) 555-0143",
                "company": "Analytical Engines",
                "city": "London",
                "country": "United Kingdom",
                "notes": "Met at the booth.\nWants a demo in May.",
            },
            request_only=True,
        ),
    ],
)

sync_one_schema = extend_schema(
    summary="Sync one lead now",
    operation_id="leads_sync_one",
    request=None,
    responses={
        202: inline_serializer("LeadSyncStarted", {
            "id": serializers.IntegerField(),
            "sync_status": serializers.CharField(),
            "job_id": serializers.IntegerField(),
            "job_url": serializers.CharField(),
        }),
        401: UNAUTHENTICATED,
        403: OpenApiResponse(DETAIL, description="The caller may not sync this lead."),
        404: OpenApiResponse(DETAIL, description="No such lead in the caller's teams."),
    },
)

sync_many_schema = extend_schema(
    summary="Sync many leads now",
    operation_id="leads_sync_many",
    request=SyncRequestSerializer,
    responses={
        202: inline_serializer("LeadSyncManyStarted", {
            "job_id": serializers.IntegerField(allow_null=True),
            "job_ids": serializers.ListField(child=serializers.IntegerField()),
            "queued": serializers.ListField(child=serializers.IntegerField()),
            "refused": serializers.DictField(
                child=serializers.CharField(),
                help_text="The reason for each lead id that was not queued.",
            ),
        }),
        400: FIELD_ERRORS,
        401: UNAUTHENTICATED,
    },
)
