import uuid

from django.conf import settings
from django.db import models

from .environments import validate_environment_url


class Integration(models.Model):
    """A connection from a team (or one subteam) to a Dynamics 365 org, and its settings."""

    class Status(models.TextChoices):
        DISCONNECTED = "disconnected", "Not connected"
        CONNECTED = "connected", "Connected"
        # The refresh token or the app secret stopped working: an admin must sign in again.
        REAUTHORIZATION_NEEDED = "reauth", "Re-authorization needed"

    class AuthMode(models.TextChoices):
        # An admin signed in; the sync acts as that Dynamics user (delegated tokens).
        SIGNED_IN_USER = "user", "Signed-in user"
        # Server-to-server: the sync acts as an application user of the environment,
        # with tokens from the client-credentials flow of the customer's own app.
        APPLICATION_USER = "app", "Application user"

    class PrimaryObject(models.TextChoices):
        LEAD = "lead", "Leads"
        CONTACT = "contact", "Contacts"

    team = models.ForeignKey("teams.Team", on_delete=models.CASCADE, related_name="integrations")
    # Empty for the full-team integration; set for a subteam's own integration.
    subteam = models.ForeignKey(
        "teams.Subteam", on_delete=models.CASCADE, null=True, blank=True,
        related_name="integrations",
    )
    org_url = models.URLField(
        "Dynamics org URL", help_text="For example https://contoso.crm.dynamics.com",
        validators=[validate_environment_url],
    )
    # The environment as the Global Discovery Service names it; empty when the admin
    # entered the URL instead of picking from the list.
    environment_name = models.CharField(max_length=200, blank=True)
    environment_unique_name = models.CharField(max_length=200, blank=True)
    environment_id = models.CharField(max_length=36, blank=True)
    # The Microsoft Entra tenant of the environment. Tokens are renewed, and application
    # users sign in, at this tenant's authority.
    # A GUID, or a domain such as contoso.onmicrosoft.com as an admin may enter it.
    tenant_id = models.CharField(max_length=255, blank=True)
    auth_mode = models.CharField(max_length=4, choices=AuthMode.choices,
                                 default=AuthMode.SIGNED_IN_USER)
    # The application (client) id of the customer's app registration in application
    # user mode, and its client secret, Fernet-encrypted with settings.TOKEN_CACHE_KEY.
    app_client_id = models.CharField(max_length=36, blank=True)
    app_client_secret_encrypted = models.TextField(blank=True)
    auto_sync = models.BooleanField(
        default=True, help_text="Push every new lead to Dynamics as soon as it is captured."
    )
    primary_object = models.CharField(
        max_length=10, choices=PrimaryObject.choices, default=PrimaryObject.LEAD
    )
    update_existing_contacts = models.BooleanField(
        "Update existing contacts", default=False,
        help_text="With Leads as the primary object: when no Dynamics lead matches, update "
                  "a contact with the same email or phone instead of creating a lead. A "
                  "qualified lead's contact is updated instead of the qualified lead.",
    )
    sync_notes = models.BooleanField(
        default=True, help_text="Add the lead's notes to the Dynamics record as a note."
    )
    member_sync_allowed = models.BooleanField(
        "Members may sync their own leads", default=True,
        help_text="With Auto Sync off, members can send their own leads to Dynamics. Turn "
                  "off to leave syncing to admins.",
    )
    search_accounts_by_website = models.BooleanField(
        "Search existing accounts by website", default=False,
        help_text="Before the company name and the email domain, look for an account whose "
                  "website matches the lead's website.",
    )

    status = models.CharField(max_length=12, choices=Status.choices, default=Status.DISCONNECTED)
    connected_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
        related_name="+",
    )
    integration_user_email = models.CharField(max_length=254, blank=True)
    integration_user_name = models.CharField(max_length=200, blank=True)
    dynamics_user_id = models.CharField(max_length=36, blank=True)
    dynamics_roles = models.JSONField(default=list, blank=True)
    connected_at = models.DateTimeField(null=True, blank=True)
    authorized_at = models.DateTimeField(null=True, blank=True)
    # MSAL's home_account_id of the signed-in user, used to find its tokens in the cache.
    msal_account_id = models.CharField(max_length=200, blank=True)
    # The serialized MSAL token cache, Fernet-encrypted with settings.TOKEN_CACHE_KEY.
    token_cache_encrypted = models.TextField(blank=True)
    last_error = models.TextField(blank=True)
    # Column metadata of lead, contact and account read from the org at connect time:
    # {table: {column: {"type", "max_length", "label", "valid_for_create", ...}}}.
    dynamics_metadata = models.JSONField(default=dict, blank=True)
    metadata_fetched_at = models.DateTimeField(null=True, blank=True)
    # Random per integration: the sync derives the ids of the records it creates from it
    # and the lead id, so two deployments or a restored database never reuse an id.
    record_id_namespace = models.UUIDField(default=uuid.uuid4, editable=False)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["team"], condition=models.Q(subteam__isnull=True),
                name="one_full_team_integration",
            ),
            models.UniqueConstraint(fields=["subteam"], name="one_integration_per_subteam"),
        ]

    def __str__(self):
        scope = self.subteam.name if self.subteam_id else "full team"
        return f"{self.team} ({scope}) -> {self.org_url}"

    @property
    def is_connected(self):
        return self.status == self.Status.CONNECTED

    @property
    def has_credentials(self):
        """Whether a sign-in or an application user's secret is stored."""
        return bool(self.token_cache_encrypted or self.app_client_secret_encrypted)

    @property
    def uses_application_user(self):
        return self.auth_mode == self.AuthMode.APPLICATION_USER


class FieldMapping(models.Model):
    """A mapping of a lead field, or a fixed value, to a Dynamics column, with a mode."""

    class Entity(models.TextChoices):
        LEAD = "lead", "Lead"
        CONTACT = "contact", "Contact"
        ACCOUNT = "account", "Account"

    class Mode(models.TextChoices):
        OVERWRITE = "overwrite", "Overwrite"
        COMPLETE = "complete", "Complete if missing"
        APPEND = "append", "Append"

    integration = models.ForeignKey(Integration, on_delete=models.CASCADE,
                                    related_name="field_mappings")
    entity = models.CharField(max_length=10, choices=Entity.choices)
    column = models.CharField("Dynamics column", max_length=100,
                              help_text="Logical name, for example jobtitle.")
    source = models.CharField(
        "Lead field", max_length=40, blank=True,
        help_text="The lead field to copy. Leave empty to write the fixed value.",
    )
    fixed_value = models.CharField(max_length=500, blank=True)
    mode = models.CharField(max_length=10, choices=Mode.choices, default=Mode.OVERWRITE)
    position = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["integration", "entity", "position", "id"]
        constraints = [
            models.UniqueConstraint(fields=["integration", "entity", "column"],
                                    name="one_mapping_per_column"),
        ]

    def __str__(self):
        source = self.source or f"'{self.fixed_value}'"
        return f"{source} -> {self.entity}.{self.column} ({self.get_mode_display()})"


class SyncLog(models.Model):
    """One sync attempt of one lead: what was decided, in which record, and any error."""

    class Outcome(models.TextChoices):
        CREATED = "created", "Created"
        UPDATED = "updated", "Updated"
        FAILED = "failed", "Failed"
        # A retryable failure: the lead stays queued and the task runs again.
        RETRYING = "retrying", "Retrying"
        # The rules leave Dynamics as it is, for example for a qualified lead.
        SKIPPED = "skipped", "Skipped"

    integration = models.ForeignKey(Integration, on_delete=models.CASCADE, related_name="logs")
    lead = models.ForeignKey("leads.Lead", on_delete=models.CASCADE, related_name="sync_logs")
    outcome = models.CharField(max_length=10, choices=Outcome.choices)
    dynamics_entity = models.CharField(max_length=20, blank=True)
    dynamics_record_id = models.CharField(max_length=36, blank=True)
    message = models.TextField(blank=True)
    # The decisions in order, for example ["lead found by email", "lead updated"].
    path = models.JSONField(default=list, blank=True)
    # Decision details: matches, columns written with old and new values, account, note.
    details = models.JSONField(default=dict, blank=True)
    request_count = models.PositiveIntegerField(default=0)
    duration_ms = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"Lead {self.lead_id}: {self.outcome}"


class RequestSlot(models.Model):
    """One of the concurrent-request slots of a Dynamics org host (see concurrency.py)."""

    org = models.CharField(max_length=255)
    number = models.PositiveIntegerField()
    # A random token of the request that has the slot; empty when free.
    holder = models.CharField(max_length=32, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["org", "number"], name="one_row_per_slot"),
        ]

    def __str__(self):
        return f"{self.org} slot {self.number}"


class SettingsChange(models.Model):
    """One saved change of an integration's settings or mappings: who, when, what."""

    integration = models.ForeignKey(Integration, on_delete=models.CASCADE,
                                    related_name="settings_changes")
    changed_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL,
                                   null=True, related_name="+")
    changed_at = models.DateTimeField(auto_now_add=True, db_index=True)
    # {"field name": {"old": ..., "new": ...}}, mappings under "mappings".
    changes = models.JSONField(default=dict)

    class Meta:
        ordering = ["-changed_at", "-id"]

    def __str__(self):
        return f"{self.integration} changed by {self.changed_by} at {self.changed_at:%Y-%m-%d %H:%M}"


class SyncJob(models.Model):
    """A manual sync of many leads, run in the background, with its progress."""

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        DONE = "done", "Done"

    integration = models.ForeignKey(Integration, on_delete=models.CASCADE,
                                    related_name="sync_jobs")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL,
                                     null=True, related_name="+")
    lead_ids = models.JSONField(default=list)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"Sync of {len(self.lead_ids)} leads ({self.status})"
