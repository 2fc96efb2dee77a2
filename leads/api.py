"""REST API for capturing leads and reading back their sync state.

    POST /api/leads/        capture a lead (201 with the lead, or 200 with the first lead
                            when its client_id or Idempotency-Key was used before)
    GET  /api/leads/        the caller's own leads, newest first, paginated
    GET  /api/leads/<id>/   one of the caller's own leads (404 for anyone else's)
    POST /api/leads/<id>/sync/  sync one lead now (202 with its status and job id, 403
                            with the reason when the caller may not sync it, 404 for a
                            lead outside the caller's teams)
    POST /api/leads/sync/   sync many: `{"ids": [...]}` (202 with the job ids, the queued
                            ids and a reason for each refused id)

The list is paginated with `?page=N` and `?page_size=N` (50 per page unless set,
at most 200) and returns `{"count", "next", "previous", "results"}`.

Captures are limited per member by the "capture" throttle rate (LEAD_CAPTURE_RATE), and
rejected with 429 and Retry-After above it. The OpenAPI schema is at /api/schema/.
"""

import logging
from collections.abc import Mapping

from django.core.exceptions import ValidationError as DjangoValidationError
from django.shortcuts import get_object_or_404
from django.urls import reverse
from rest_framework import mixins, permissions, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied, Throttled, ValidationError
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response

from teams.selectors import teams_of_member

from .api_schema import capture_schema, sync_many_schema, sync_one_schema
from .models import Lead
from .selectors import leads_captured_by, leads_in_teams_of
from .serializers import LeadSerializer, SyncRequestSerializer
from .throttling import CaptureRateThrottle
from .services import (
    NO_TEAM_MESSAGE,
    CaptureTeamError,
    NoTeamError,
    capture_lead,
    capture_lead_once,
    choose_capture_team,
    find_lead_by_reference,
)

logger = logging.getLogger(__name__)


# The request header that carries a client reference, as an alternative to client_id.
IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"


class LeadPagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


class CanCaptureLeads(permissions.BasePermission):
    """Let only members of a team create leads. Reading one's own leads needs no team."""

    message = NO_TEAM_MESSAGE

    def has_permission(self, request, view):
        if request.method != "POST":
            return True
        return teams_of_member(request.user).exists()


class LeadViewSet(
    mixins.CreateModelMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    serializer_class = LeadSerializer
    permission_classes = [permissions.IsAuthenticated, CanCaptureLeads]
    pagination_class = LeadPagination
    # Numeric ids only, so that /api/leads/sync/ never reads as the lead "sync".
    lookup_value_regex = "[0-9]+"

    def get_queryset(self):
        # The team gives the default phone region for phone_e164 in each response.
        return leads_captured_by(self.request.user).select_related("team")

    def get_throttles(self):
        if self.action == "create":
            return [CaptureRateThrottle()]
        return super().get_throttles()

    def throttled(self, request, wait):
        # DRF's default text does not tell the app that the lead was not saved.
        raise Throttled(wait=wait, detail=(
            f"Too many captures by {request.user.get_username()}: this lead was not "
            "saved. Send it again after Retry-After seconds."))

    @capture_schema
    def create(self, request, *args, **kwargs):
        # The first lead of a retried capture is returned before the rest of the body is
        # validated, so the first body wins even when a retry's body differs or is invalid.
        reference = self._client_reference(request)
        if reference:
            existing = find_lead_by_reference(request.user, reference)
            if existing is not None:
                return Response(self.get_serializer(existing).data, status=status.HTTP_200_OK)

        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        requested_team = data.pop("team", None)
        data.pop("client_reference", None)

        try:
            team = choose_capture_team(member=request.user, team=requested_team)
        except NoTeamError as error:
            raise PermissionDenied(str(error)) from error
        except CaptureTeamError as error:
            logger.warning("Rejected lead capture by user %s: %s", request.user.pk, error)
            raise ValidationError({"team": [str(error)]}) from error

        try:
            if reference:
                lead, created = capture_lead_once(
                    member=request.user, team=team, data=data, source=Lead.Source.API,
                    client_reference=reference,
                )
            else:
                lead = capture_lead(member=request.user, team=team, data=data)
                created = True
        except DjangoValidationError as error:
            # The serializer checks the model's rules first, so this catches only a model
            # check that the serializer misses.
            logger.warning("Model validation rejected a capture by user %s: %s",
                           request.user.pk, error)
            raise ValidationError(_validation_detail(error)) from error

        response_status = status.HTTP_201_CREATED if created else status.HTTP_200_OK
        return Response(self.get_serializer(lead).data, status=response_status)

    def _client_reference(self, request) -> str:
        """Return the capture's client reference from client_id or the header, or ""."""
        client_id_field = self.get_serializer().fields["client_id"]
        body_value = ""
        if isinstance(request.data, Mapping) and "client_id" in request.data:
            body_value = _run_field(client_id_field, request.data["client_id"], "client_id")
        header_value = ""
        if IDEMPOTENCY_KEY_HEADER in request.headers:
            header_value = _run_field(
                client_id_field, request.headers[IDEMPOTENCY_KEY_HEADER],
                IDEMPOTENCY_KEY_HEADER,
            )

        if body_value and header_value and body_value != header_value:
            raise ValidationError({"client_id": [
                f"client_id differs from the {IDEMPOTENCY_KEY_HEADER} header. Send one of "
                f"them, or the same value in both."
            ]})
        return body_value or header_value

    @sync_one_schema
    @action(detail=True, methods=["post"], url_path="sync",
            permission_classes=[permissions.IsAuthenticated])
    def sync(self, request, pk=None):
        # Imported here: integrations imports leads, so a module-level import would loop.
        from integrations import jobs

        # Admins sync their team's leads, so the lookup covers the caller's teams, not
        # only the caller's own leads.
        lead = get_object_or_404(leads_in_teams_of(request.user), pk=pk)
        started = jobs.start_sync(request.user, [lead])
        if lead.pk in started.refused:
            logger.warning("User %s may not sync lead %s: %s", request.user.pk, lead.pk,
                           started.refused[lead.pk])
            raise PermissionDenied(started.refused[lead.pk])

        lead.refresh_from_db(fields=["sync_status", "last_sync_error"])
        return Response({
            "id": lead.pk,
            "sync_status": lead.sync_status,
            "job_id": started.job.pk,
            "job_url": reverse("sync:job", args=[started.job.pk]),
        }, status=status.HTTP_202_ACCEPTED)

    @sync_many_schema
    @action(detail=False, methods=["post"], url_path="sync",
            permission_classes=[permissions.IsAuthenticated])
    def sync_many(self, request):
        from integrations import jobs

        serializer = SyncRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        started = jobs.start_sync_by_ids(request.user, serializer.validated_data["ids"])
        return Response({
            "job_id": started.job.pk if started.job else None,
            "job_ids": [job.pk for job in started.jobs],
            "queued": started.queued,
            "refused": {str(lead_id): reason for lead_id, reason in started.refused.items()},
        }, status=status.HTTP_202_ACCEPTED)


def _run_field(field, value, name):
    """Validate `value` with a serializer field, naming `name` in the 400 on error."""
    try:
        return field.run_validation(value)
    except ValidationError as error:
        raise ValidationError({name: error.detail}) from error


def _validation_detail(error: DjangoValidationError):
    if hasattr(error, "error_dict"):
        return error.message_dict
    return {"non_field_errors": error.messages}
