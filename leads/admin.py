from django import forms
from django.contrib import admin, messages
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.html import format_html

from teams.admin_scoping import TeamScopedAdminMixin
from teams.selectors import is_team_member

from .imports.admin_views import LeadImportAdminMixin
from .models import Lead
from .services import CAPTURE_FIELDS, capture_lead, validate_identifying_fields

# Fields that the sync writes, so the admin shows them read-only.
SYNC_FIELDS = [
    "sync_status", "dynamics_entity", "dynamics_record_id", "last_sync_error",
    "last_synced_at", "sync_attempts", "captured_at",
]


class LeadAdminForm(forms.ModelForm):
    """Check a lead entered in the admin with the same rules as the API."""

    class Meta:
        model = Lead
        fields = "__all__"

    def clean(self):
        cleaned_data = super().clean()
        validate_identifying_fields(cleaned_data)

        team = cleaned_data.get("team")
        captured_by = cleaned_data.get("captured_by")
        if team and captured_by and not is_team_member(captured_by, team):
            self.add_error(
                "captured_by", f"{captured_by} is not a member of team {team}."
            )
        return cleaned_data


@admin.register(Lead)
class LeadAdmin(LeadImportAdminMixin, TeamScopedAdminMixin, admin.ModelAdmin):
    team_field = "team"
    form = LeadAdminForm
    list_display = [
        "name", "email", "company", "captured_by", "team", "sync_state",
        "dynamics_record_id", "captured_at",
    ]
    # RelatedOnlyFieldListFilter offers only the teams of the rows the user can see; the
    # plain filter would list every team's name to every team admin.
    list_filter = ["sync_status", ("team", admin.RelatedOnlyFieldListFilter)]
    list_select_related = ["captured_by", "team"]
    search_fields = [
        "first_name", "last_name", "email", "phone", "company", "dynamics_record_id",
    ]
    date_hierarchy = "captured_at"
    readonly_fields = SYNC_FIELDS
    fieldsets = [
        (None, {"fields": ["team", "captured_by"]}),
        ("Contact", {"fields": list(CAPTURE_FIELDS)}),
        ("Sync", {"fields": [*SYNC_FIELDS, "sync_preview"]}),
    ]

    actions = ["sync_to_dynamics"]

    @admin.action(description="Sync selected leads to Dynamics")
    def sync_to_dynamics(self, request, queryset):
        # Imported here: integrations imports leads, so a module-level import would loop.
        from integrations import jobs
        from integrations.sync_views import report_sync_start

        started = jobs.start_sync(request.user, queryset.select_related("captured_by"))
        job_url = report_sync_start(request, started)
        if job_url:
            return redirect(job_url)
        return None

    @admin.display(description="Preview")
    def sync_preview(self, lead):
        if lead.pk is None:
            return "-"
        # "Save and sync to Dynamics" has a row under the Save buttons (change_form.html).
        url = reverse("integrations:preview", args=[lead.pk])
        return format_html('<a href="{}">What would a sync do now?</a>', url)

    @admin.display(description="Name", ordering="last_name")
    def name(self, lead):
        return f"{lead.first_name} {lead.last_name}".strip() or "-"

    @admin.display(description="Sync status", ordering="sync_status")
    def sync_state(self, lead):
        return lead.sync_state_label

    def response_change(self, request, obj):
        if "_sync" not in request.POST:
            return super().response_change(request, obj)
        from integrations import jobs
        from integrations.sync_views import report_sync_start

        messages.success(request, f"The lead “{obj}” was saved.")
        started = jobs.start_sync(request.user, [obj])
        return redirect(report_sync_start(request, started)
                        or reverse("admin:leads_lead_change", args=[obj.pk]))

    def get_readonly_fields(self, request, obj=None):
        # A lead stays with the team and the member that captured it.
        if obj is not None:
            return [*SYNC_FIELDS, "sync_preview", "team", "captured_by"]
        return [*SYNC_FIELDS, "sync_preview"]

    def save_model(self, request, obj, form, change):
        self.check_team_access(request, obj)
        if change:
            # Only the edited capture fields are written. A full save would also write
            # the sync fields as this request read them, over a worker's claim or outcome.
            changed = [name for name in CAPTURE_FIELDS if name in form.changed_data]
            if changed:
                obj.save(update_fields=changed)
            return

        # A new lead goes through capture, like one from the API, so its sync is scheduled.
        lead = capture_lead(
            member=obj.captured_by,
            team=obj.team,
            data={name: form.cleaned_data[name] for name in CAPTURE_FIELDS},
        )
        obj.pk = lead.pk
        obj.refresh_from_db()
        obj._state.adding = False
