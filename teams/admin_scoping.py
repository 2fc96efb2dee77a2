"""Scope Django admin pages to the teams that the signed-in user administers.

Mix `TeamScopedAdminMixin` into a ModelAdmin or an InlineModelAdmin and set
`team_field` to the lookup path from the model to `teams.Team`::

    @admin.register(Lead)
    class LeadAdmin(TeamScopedAdminMixin, admin.ModelAdmin):
        team_field = "team"

    class SubteamMembershipInline(TeamScopedAdminMixin, admin.TabularInline):
        model = SubteamMembership
        team_field = "subteam__team"

Access rules:

* A superuser can view and change every row, as in a plain ModelAdmin.
* A team admin (a Membership with the admin role, plus `is_staff` to log in) may view,
  add, change and delete the rows of the teams they administer, without any Django
  model permission.
* Everyone else, including staff with model permissions, gets no rows and no pages.

Foreign key choices shrink to the user's teams: a key to Team lists the administered
teams, to Subteam their subteams, to the user model their members, and to a model
with a `team` foreign key the rows of those teams. Any other key needs an entry in
`related_team_fields` (field name -> path from the related model to Team), or it
lists every row. Saving a row whose team the user does not administer
raises PermissionDenied. For a team admin, the change, delete and history pages of a
row outside their teams answer 404, the same as for a row that does not exist, where
Django would redirect to the admin index.
"""

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.core.exceptions import FieldDoesNotExist, PermissionDenied
from django.forms.models import _get_foreign_key
from django.http import Http404

from .models import Subteam, Team
from .selectors import team_ids_administered_by

# Request attribute that caches the administered team ids for one request.
_CACHE_ATTRIBUTE = "_team_scoped_admin_team_ids"


def administered_team_ids(request) -> set[int]:
    """Return the ids of the teams that the request's user administers, cached per request."""
    team_ids = getattr(request, _CACHE_ATTRIBUTE, None)
    if team_ids is None:
        team_ids = team_ids_administered_by(request.user)
        setattr(request, _CACHE_ATTRIBUTE, team_ids)
    return team_ids


def _team_id_of(obj, team_field: str | None):
    """Follow `team_field` from `obj` and return the team id it ends at.

    `team_field=None` means `obj` is the team itself.
    """
    if team_field is None:
        return obj.pk
    *path, last = team_field.split("__")
    for name in path:
        obj = getattr(obj, name)
        if obj is None:
            return None
    return getattr(obj, obj._meta.get_field(last).attname)


def _has_team_foreign_key(model) -> bool:
    try:
        field = model._meta.get_field("team")
    except FieldDoesNotExist:
        return False
    return field.many_to_one and field.related_model is Team


class TeamScopedAdminMixin:
    """Limit a ModelAdmin or InlineModelAdmin to the teams the user administers."""

    # Lookup path from this admin's model to teams.Team, such as "team" or
    # "subteam__team". None means the model is Team itself.
    team_field: str | None = "team"
    # Foreign key field name -> lookup path from the related model to Team, for keys
    # to models other than Team, Subteam and the user model.
    related_team_fields: dict[str, str] = {}

    # -- Who is asking -------------------------------------------------------------

    def _is_superuser(self, request) -> bool:
        return request.user.is_active and request.user.is_superuser

    def _is_inline(self) -> bool:
        return isinstance(self, admin.options.InlineModelAdmin)

    def _team_filter(self, team_ids, team_field=None) -> dict:
        path = self.team_field if team_field is None else team_field
        return {f"{path or 'pk'}__in": team_ids}

    def _obj_team_id(self, obj):
        """Return the team id of a row, or of the parent row an inline receives."""
        if self._is_inline() and not isinstance(obj, self.model):
            return _team_id_of(obj, self._parent_team_field())
        return _team_id_of(obj, self.team_field)

    def _parent_team_field(self):
        """Return the path from the inline's parent model to Team.

        Inline permission methods receive the parent row, so the path is `team_field`
        without the leading foreign key to the parent.
        """
        fk_name = _get_foreign_key(self.parent_model, self.model, fk_name=self.fk_name).name
        if self.team_field == fk_name:
            return None
        prefix = f"{fk_name}__"
        if not (self.team_field or "").startswith(prefix):
            raise ValueError(
                f"{type(self).__name__}.team_field {self.team_field!r} must start with the "
                f"foreign key to the parent model, {fk_name!r}."
            )
        return self.team_field.removeprefix(prefix)

    def _may_manage(self, request, obj=None) -> bool:
        if self._is_superuser(request):
            return True
        team_ids = administered_team_ids(request)
        if obj is None:
            return bool(team_ids)
        return self._obj_team_id(obj) in team_ids

    # -- Permissions: team admins need no Django model permissions -----------------

    def has_module_permission(self, request):
        if self._is_superuser(request):
            return super().has_module_permission(request)
        return bool(administered_team_ids(request))

    def has_view_permission(self, request, obj=None):
        if self._is_superuser(request):
            return super().has_view_permission(request, obj)
        return self._may_manage(request, obj)

    def has_add_permission(self, request, obj=None):
        if self._is_superuser(request):
            if self._is_inline():
                return super().has_add_permission(request, obj)
            return super().has_add_permission(request)
        return self._may_manage(request, obj)

    def has_change_permission(self, request, obj=None):
        if self._is_superuser(request):
            return super().has_change_permission(request, obj)
        return self._may_manage(request, obj)

    def has_delete_permission(self, request, obj=None):
        if self._is_superuser(request):
            return super().has_delete_permission(request, obj)
        return self._may_manage(request, obj)

    # -- Rows and choices -----------------------------------------------------------

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if self._is_superuser(request):
            return queryset
        return queryset.filter(**self._team_filter(administered_team_ids(request)))

    def get_object(self, request, object_id, from_field=None):
        obj = super().get_object(request, object_id, from_field)
        if obj is None and not self._is_superuser(request):
            raise Http404(f"No {self.opts.verbose_name} with id {object_id!r} in your teams.")
        return obj

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if not self._is_superuser(request) and "queryset" not in kwargs:
            queryset = self._scoped_choices(db_field, request)
            if queryset is not None:
                kwargs["queryset"] = queryset
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def _scoped_choices(self, db_field, request):
        team_ids = administered_team_ids(request)
        model = db_field.related_model
        if model is Team:
            return Team.objects.filter(pk__in=team_ids)
        if model is Subteam:
            return Subteam.objects.filter(team__in=team_ids)
        if model is get_user_model():
            return model.objects.filter(memberships__team__in=team_ids).distinct()
        if db_field.name in self.related_team_fields:
            path = self.related_team_fields[db_field.name]
            return model.objects.filter(**{f"{path}__in": team_ids})
        if _has_team_foreign_key(model):
            return model.objects.filter(team__in=team_ids)
        return None

    # -- Saving ---------------------------------------------------------------------

    def check_team_access(self, request, obj):
        """Raise PermissionDenied unless the user administers the team `obj` belongs to.

        Call it before writing a row that a form did not validate, such as a row built
        by an admin action.
        """
        if not self._is_superuser(request) and not self._may_manage(request, obj):
            raise PermissionDenied("You can only save rows of teams that you administer.")

    def save_model(self, request, obj, form, change):
        # Form choices already exclude other teams. This check also covers fields
        # that are read-only or left out of the form.
        self.check_team_access(request, obj)
        super().save_model(request, obj, form, change)
