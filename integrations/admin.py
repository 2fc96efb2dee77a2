from django.contrib import admin

from teams.admin_scoping import TeamScopedAdminMixin

from .models import Integration, SyncLog

# Written by the sign-in and sync code, never by hand.
CONNECTION_FIELDS = (
    "status", "connected_by", "integration_user_email", "integration_user_name",
    "dynamics_user_id", "dynamics_roles", "connected_at", "authorized_at", "last_error",
    "created_at", "updated_at",
)


@admin.register(Integration)
class IntegrationAdmin(TeamScopedAdminMixin, admin.ModelAdmin):
    team_field = "team"
    list_display = ("team", "subteam", "org_url", "status", "auto_sync", "primary_object",
                    "integration_user_email", "authorized_at")
    list_filter = ("status", "auto_sync", "primary_object")
    list_select_related = ("team", "subteam")
    readonly_fields = CONNECTION_FIELDS
    # The encrypted token cache and MSAL account id are never shown or edited here.
    exclude = ("token_cache_encrypted", "msal_account_id")


@admin.register(SyncLog)
class SyncLogAdmin(TeamScopedAdminMixin, admin.ModelAdmin):
    team_field = "integration__team"
    list_display = ("created_at", "lead", "outcome", "dynamics_entity", "dynamics_record_id",
                    "message")
    list_filter = ("outcome", "dynamics_entity")
    list_select_related = ("lead", "integration")
    search_fields = ("dynamics_record_id", "lead__email", "lead__last_name")
    readonly_fields = ("integration", "lead", "outcome", "dynamics_entity",
                       "dynamics_record_id", "message", "details", "created_at")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
