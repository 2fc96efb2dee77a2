from django import forms
from django.contrib import admin
from django.db import models
from django.urls import reverse
from django.utils.html import format_html

from teams.admin_scoping import TeamScopedAdminMixin

from .field_mappings import validate_mapping
from .models import FieldMapping, Integration, SettingsChange, SyncLog
from .sync import mappings

# Written by the sign-in and sync code, never by hand.
CONNECTION_FIELDS = (
    "status", "auth_mode", "environment_name", "environment_unique_name", "environment_id",
    "tenant_id", "app_client_id", "connected_by", "integration_user_email",
    "integration_user_name",
    "dynamics_user_id", "dynamics_roles", "connected_at", "authorized_at", "last_error",
    "metadata_fetched_at", "created_at", "updated_at",
)


class FieldMappingForm(forms.ModelForm):
    """Checks each mapping against the org's columns before it is saved."""

    source = forms.ChoiceField(
        label="Lead field", required=False,
        choices=[("", "(fixed value)")] + [
            (name, label) for name, (label, _) in mappings.SOURCE_FIELDS.items()
        ],
    )

    class Meta:
        model = FieldMapping
        fields = ("entity", "column", "source", "fixed_value", "mode", "position")

    def clean(self):
        cleaned_data = super().clean()
        integration = self.instance.integration if self.instance.integration_id else None
        integration = integration or getattr(self, "parent_integration", None)
        if not self.errors and cleaned_data.get("entity"):
            validate_mapping(
                integration.dynamics_metadata if integration else {},
                entity=cleaned_data["entity"],
                column=cleaned_data.get("column", ""),
                source=cleaned_data.get("source", ""),
                fixed_value=cleaned_data.get("fixed_value", ""),
                mode=cleaned_data.get("mode", ""),
            )
        return cleaned_data


class FieldMappingInline(TeamScopedAdminMixin, admin.TabularInline):
    model = FieldMapping
    form = FieldMappingForm
    team_field = "integration__team"
    extra = 1

    def get_formset(self, request, obj=None, **kwargs):
        formset = super().get_formset(request, obj, **kwargs)
        # Forms of new rows have no integration yet; give them the parent's metadata.
        formset.form = type("BoundFieldMappingForm", (self.form,), {"parent_integration": obj})
        return formset


@admin.register(Integration)
class IntegrationAdmin(TeamScopedAdminMixin, admin.ModelAdmin):
    team_field = "team"
    inlines = [FieldMappingInline]
    list_display = ("team", "subteam", "org_url", "status", "auto_sync", "primary_object",
                    "integration_user_email", "authorized_at")
    list_filter = ("status", "auto_sync", "primary_object")
    list_select_related = ("team", "subteam")
    readonly_fields = CONNECTION_FIELDS
    # An org URL typed without a scheme is an https URL (Django 6 makes this the default).
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    # The encrypted token cache and client secret, the MSAL account and the raw metadata
    # stay out of forms.
    exclude = ("token_cache_encrypted", "app_client_secret_encrypted", "msal_account_id",
               "dynamics_metadata")

    def get_readonly_fields(self, request, obj=None):
        # The stored sign-in belongs to one environment, so an existing integration moves
        # only through Connect on the Sync Settings page, which signs in to the new one.
        if obj is not None:
            return (*CONNECTION_FIELDS, "org_url")
        return CONNECTION_FIELDS
    fieldsets = (
        (None, {"fields": ("team", "subteam", "org_url")}),
        ("General settings", {"fields": ("auto_sync", "primary_object")}),
        ("Advanced settings", {
            "classes": ("collapse",),
            "fields": ("sync_notes", "update_existing_contacts",
                       "search_accounts_by_website"),
        }),
        ("Authorization information", {"fields": CONNECTION_FIELDS}),
    )


@admin.register(SyncLog)
class SyncLogAdmin(TeamScopedAdminMixin, admin.ModelAdmin):
    team_field = "integration__team"
    list_display = ("created_at", "lead", "outcome", "dynamics_entity", "dynamics_record_id",
                    "request_count", "duration_ms", "message")
    list_filter = ("outcome", "dynamics_entity")
    list_select_related = ("lead", "integration")
    search_fields = ("dynamics_record_id", "lead__email", "lead__last_name")
    readonly_fields = ("integration", "lead", "outcome", "dynamics_entity",
                       "dynamics_record_id", "message", "path", "details", "request_count",
                       "duration_ms", "created_at", "preview_link")

    @admin.display(description="Preview")
    def preview_link(self, log):
        url = reverse("integrations:preview", args=[log.lead_id])
        return format_html('<a href="{}">What would a sync of this lead do now?</a>', url)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(SettingsChange)
class SettingsChangeAdmin(TeamScopedAdminMixin, admin.ModelAdmin):
    """The history of the Sync Settings page: who changed which setting or mapping, when."""

    team_field = "integration__team"
    list_display = ("changed_at", "integration", "changed_by", "changed_fields")
    list_select_related = ("integration__team", "integration__subteam", "changed_by")
    readonly_fields = ("integration", "changed_by", "changed_at", "changes")
    date_hierarchy = "changed_at"

    @admin.display(description="Changed")
    def changed_fields(self, change):
        return ", ".join(change.changes)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
