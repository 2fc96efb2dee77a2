"""Admin pages that import a vCard or CSV file: upload, preview, import in batches, summary.

LeadAdmin mixes in LeadImportAdminMixin. Team admins import for members of the teams
they administer, and superusers for members of any team.
"""

import logging

from django import forms
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseNotAllowed
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from leads.services import CaptureTeamError
from teams.admin_scoping import administered_team_ids
from teams.models import Team
from teams.selectors import is_team_member, teams_of_member

from .base import MAX_FILE_SIZE, MAX_FILE_SIZE_TEXT, ImportFileError
from .decoding import check_size
from .pending import create_pending, load_pending, save_pending
from .service import import_rows, preview_file

logger = logging.getLogger(__name__)

# Rows imported per request. Each row is its own capture transaction, so a batch of
# this size takes a few seconds at most and the progress page updates between batches.
IMPORT_BATCH_SIZE = 200
# Rows listed per table on the preview page; the counts still cover every row.
MAX_PREVIEW_ROWS = 200


class ImportUploadForm(forms.Form):
    file = forms.FileField(
        help_text=f"A vCard (.vcf) or CSV file of at most {MAX_FILE_SIZE_TEXT}."
    )
    team = forms.ModelChoiceField(queryset=Team.objects.none())
    captured_by = forms.ModelChoiceField(
        queryset=get_user_model().objects.none(), label="Captured by",
        help_text="The member who captured these leads. The leads are theirs, as if "
                  "they had captured them in the app.",
    )

    def __init__(self, *args, team_ids, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["team"].queryset = Team.objects.filter(pk__in=team_ids).order_by("name")
        self.fields["captured_by"].queryset = (
            get_user_model().objects.filter(memberships__team__in=team_ids, is_active=True)
            .distinct().order_by("username")
        )

    def clean_file(self):
        upload = self.cleaned_data["file"]
        try:
            check_size(upload.size)
        except ImportFileError as error:
            raise forms.ValidationError(str(error)) from error
        return upload

    def clean(self):
        cleaned_data = super().clean()
        team = cleaned_data.get("team")
        member = cleaned_data.get("captured_by")
        if team and member and not is_team_member(member, team):
            self.add_error("captured_by", f"{member} is not a member of team {team}.")
        return cleaned_data


class LeadImportAdminMixin:
    """Add the import pages to a ModelAdmin of Lead that uses TeamScopedAdminMixin."""

    change_list_template = "leads/import_change_list.html"

    def get_urls(self):
        prefix = f"{self.opts.app_label}_{self.opts.model_name}"
        wrap = self.admin_site.admin_view
        import_urls = [
            path("import/", wrap(self.import_upload_view), name=f"{prefix}_import"),
            path("import/<str:token>/", wrap(self.import_preview_view),
                 name=f"{prefix}_import_preview"),
            path("import/<str:token>/run/", wrap(self.import_run_view),
                 name=f"{prefix}_import_run"),
            path("import/<str:token>/summary/", wrap(self.import_summary_view),
                 name=f"{prefix}_import_summary"),
        ]
        # Before the ModelAdmin's own URLs, whose "<path:object_id>/" would match first.
        return import_urls + super().get_urls()

    # -- Access -----------------------------------------------------------------------

    def _import_team_ids(self, request) -> set[int]:
        if not self.has_add_permission(request):
            raise PermissionDenied("Only team admins can import leads.")
        if request.user.is_superuser:
            return set(Team.objects.values_list("pk", flat=True))
        return administered_team_ids(request)

    def _load_pending(self, request, token):
        team_ids = self._import_team_ids(request)
        pending = load_pending(token, user_id=request.user.pk)
        # The team check repeats at every step, in case the user lost the admin role.
        if pending is None or pending.team_id not in team_ids:
            raise Http404("No such import. Upload the file again.")
        return pending

    def _url(self, name, pending=None):
        args = [pending.token] if pending else []
        return reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_{name}", args=args)

    def _render(self, request, template, title, **context):
        context.update(self.admin_site.each_context(request), opts=self.opts, title=title)
        return TemplateResponse(request, template, context)

    # -- Views ------------------------------------------------------------------------

    def import_upload_view(self, request):
        team_ids = self._import_team_ids(request)
        if request.method == "POST":
            form = ImportUploadForm(request.POST, request.FILES, team_ids=team_ids)
            if form.is_valid():
                pending = self._read_upload(request, form)
                if pending is not None:
                    return redirect(self._url("import_preview", pending))
        else:
            form = ImportUploadForm(team_ids=team_ids, initial=self._initial(request, team_ids))
        return self._render(request, "leads/import_upload.html", "Import leads", form=form)

    def _initial(self, request, team_ids):
        initial = {}
        if len(team_ids) == 1:
            initial["team"] = next(iter(team_ids))
        if teams_of_member(request.user).filter(pk__in=team_ids).exists():
            initial["captured_by"] = request.user.pk
        return initial

    def _read_upload(self, request, form):
        upload = form.cleaned_data["file"]
        member = form.cleaned_data["captured_by"]
        team = form.cleaned_data["team"]
        # One more byte than the limit, so that a file whose reported size was wrong
        # is still caught by the size check in read_file.
        content = upload.read(MAX_FILE_SIZE + 1)
        try:
            preview = preview_file(content, file_name=upload.name, member=member)
        except ImportFileError as error:
            logger.warning("Import upload %r by user %s rejected: %s",
                           upload.name, request.user.pk, error)
            form.add_error("file", str(error))
            return None
        return create_pending(user_id=request.user.pk, member_id=member.pk,
                              team_id=team.pk, preview=preview)

    def import_preview_view(self, request, token):
        pending = self._load_pending(request, token)
        preview = pending.preview
        return self._render(
            request, "leads/import_preview.html", f"Import {preview.file_name}",
            pending=pending, preview=preview,
            member=get_user_model().objects.filter(pk=pending.member_id).first(),
            team=Team.objects.filter(pk=pending.team_id).first(),
            new_rows=preview.new_rows[:MAX_PREVIEW_ROWS],
            error_rows=preview.error_rows[:MAX_PREVIEW_ROWS],
            already_imported_rows=preview.already_imported_rows[:MAX_PREVIEW_ROWS],
            max_rows=MAX_PREVIEW_ROWS,
            run_url=self._url("import_run", pending),
        )

    def import_run_view(self, request, token):
        """Import the next batch of rows, then show the progress or the summary."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        pending = self._load_pending(request, token)
        if pending.finished:
            return redirect(self._url("import_summary", pending))

        member = get_user_model().objects.filter(pk=pending.member_id).first()
        team = Team.objects.filter(pk=pending.team_id).first()
        if member is None or team is None:
            messages.error(request, "The import stopped: its member or team was deleted.")
            return redirect(self._url("import"))
        batch = pending.preview.rows[pending.next_row:pending.next_row + IMPORT_BATCH_SIZE]
        try:
            result = import_rows(batch, member=member, team=team,
                                 source=pending.preview.source)
        except CaptureTeamError as error:
            # The member left the team, or was deactivated, after the upload.
            messages.error(request, f"The import stopped: {error}")
            return redirect(self._url("import"))
        pending.result.add(result)
        pending.next_row += len(batch)
        save_pending(pending)

        if pending.finished:
            logger.info("Admin import %s by user %s finished: %d created, %d already "
                        "imported, %d failed", pending.token[:8], request.user.pk,
                        pending.result.created, pending.result.already_imported,
                        len(pending.result.failed))
            return redirect(self._url("import_summary", pending))
        return self._render(
            request, "leads/import_progress.html", f"Importing {pending.preview.file_name}",
            pending=pending, total=len(pending.preview.rows),
            run_url=self._url("import_run", pending),
        )

    def import_summary_view(self, request, token):
        pending = self._load_pending(request, token)
        if not pending.finished:
            return redirect(self._url("import_preview", pending))
        return self._render(
            request, "leads/import_summary.html", f"Imported {pending.preview.file_name}",
            pending=pending, result=pending.result,
            changelist_url=reverse(
                f"admin:{self.opts.app_label}_{self.opts.model_name}_changelist"
            ),
        )
