"""REST API for capturing leads and reading back their sync state.

    POST /api/leads/        capture a lead (201 with the lead)
    GET  /api/leads/        the caller's own leads, newest first, paginated
    GET  /api/leads/<id>/   one of the caller's own leads (404 for anyone else's)

The list is paginated with `?page=N` and `?page_size=N` (50 per page unless set,
at most 200) and returns `{"count", "next", "previous", "results"}`.
"""

import logging

from rest_framework import mixins, permissions, status, viewsets
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response

from teams.selectors import teams_of_member

from .selectors import leads_captured_by
from .serializers import LeadSerializer
from .services import (
    NO_TEAM_MESSAGE,
    CaptureTeamError,
    NoTeamError,
    capture_lead,
    choose_capture_team,
)

logger = logging.getLogger(__name__)

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

    def get_queryset(self):
        return leads_captured_by(self.request.user)

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        requested_team = data.pop("team", None)

        try:
            team = choose_capture_team(member=request.user, team=requested_team)
        except NoTeamError as error:
            raise PermissionDenied(str(error)) from error
        except CaptureTeamError as error:
            logger.warning("Rejected lead capture by user %s: %s", request.user.pk, error)
            raise ValidationError({"team": [str(error)]}) from error

        lead = capture_lead(member=request.user, team=team, data=data)
        return Response(self.get_serializer(lead).data, status=status.HTTP_201_CREATED)
