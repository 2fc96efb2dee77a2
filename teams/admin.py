from django import forms
from django.contrib import admin
from django.db.models import Count

from .admin_scoping import TeamScopedAdminMixin
from .models import Membership, Subteam, SubteamMembership, Team
from .selectors import is_team_member
from .services import add_member


class MembershipInline(TeamScopedAdminMixin, admin.TabularInline):
    model = Membership
    team_field = "team"
    fields = ["user", "role", "joined_at"]
    readonly_fields = ["joined_at"]
    extra = 0


class SubteamInline(TeamScopedAdminMixin, admin.TabularInline):
    model = Subteam
    team_field = "team"
    fields = ["name"]
    extra = 0
    show_change_link = True


class SubteamMembershipFormSet(forms.BaseInlineFormSet):
    """Reject subteam members who are not members of the subteam's team."""

    def clean(self):
        super().clean()
        team = self.instance.team
        for form in self.forms:
            user = form.cleaned_data.get("user")
            if form.cleaned_data.get("DELETE") or user is None:
                continue
            if not is_team_member(user, team):
                form.add_error(
                    "user",
                    f"{user} is not a member of team {team}. Add them to the team first.",
                )


class SubteamMembershipInline(TeamScopedAdminMixin, admin.TabularInline):
    model = SubteamMembership
    team_field = "subteam__team"
    formset = SubteamMembershipFormSet
    fields = ["user", "is_admin"]
    extra = 0


@admin.register(Team)
class TeamAdmin(TeamScopedAdminMixin, admin.ModelAdmin):
    team_field = None
    list_display = ["name", "default_phone_region", "member_count", "lead_count", "created_at"]
    search_fields = ["name"]
    readonly_fields = ["created_at"]
    inlines = [MembershipInline, SubteamInline]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(
                member_count=Count("memberships", distinct=True),
                lead_count=Count("leads", distinct=True),
            )
        )

    @admin.display(description="Members", ordering="member_count")
    def member_count(self, team):
        return team.member_count

    @admin.display(description="Leads", ordering="lead_count")
    def lead_count(self, team):
        return team.lead_count

    # Only superusers create or delete teams, because a new team would have no admin
    # and deleting one deletes all of its leads.
    def has_add_permission(self, request):
        return request.user.is_active and request.user.is_superuser

    def has_delete_permission(self, request, obj=None):
        return request.user.is_active and request.user.is_superuser

    def save_formset(self, request, form, formset, change):
        if formset.model is not Membership:
            return super().save_formset(request, form, formset, change)

        # Memberships go through add_member, which also grants admins `is_staff`.
        memberships = formset.save(commit=False)
        for membership in formset.deleted_objects:
            membership.delete()
        for membership in memberships:
            _save_membership(membership)


def _save_membership(membership):
    """Save a membership built by an admin form through the add_member service."""
    saved = add_member(membership.team, membership.user, membership.role)
    membership.pk = saved.pk
    membership.joined_at = saved.joined_at
    membership._state.adding = False


@admin.register(Subteam)
class SubteamAdmin(TeamScopedAdminMixin, admin.ModelAdmin):
    team_field = "team"
    list_display = ["name", "team", "member_count"]
    list_filter = [("team", admin.RelatedOnlyFieldListFilter)]
    list_select_related = ["team"]
    search_fields = ["name", "team__name"]
    inlines = [SubteamMembershipInline]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(member_count=Count("memberships"))

    @admin.display(description="Members", ordering="member_count")
    def member_count(self, subteam):
        return subteam.member_count


@admin.register(Membership)
class MembershipAdmin(TeamScopedAdminMixin, admin.ModelAdmin):
    team_field = "team"
    list_display = ["user", "team", "role", "joined_at"]
    list_filter = ["role", ("team", admin.RelatedOnlyFieldListFilter)]
    list_select_related = ["user", "team"]
    search_fields = ["user__username", "user__email", "team__name"]
    readonly_fields = ["joined_at"]

    def get_readonly_fields(self, request, obj=None):
        # A membership ties one user to one team. To move someone, add a new membership.
        if obj is not None:
            return [*self.readonly_fields, "team", "user"]
        return self.readonly_fields

    def save_model(self, request, obj, form, change):
        self.check_team_access(request, obj)
        _save_membership(obj)
