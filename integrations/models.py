import uuid

from django.conf import settings
from django.db import models


class Integration(models.Model):
    """A connection from a team (or one subteam) to a Dynamics 365 org, and its settings."""

    class Status(models.TextChoices):
        DISCONNECTED = "disconnected", "Not connected"
        CONNECTED = "connected", "Connected"
        # The refresh token or the app secret stopped working: an admin must sign in again.
        REAUTHORIZATION_NEEDED = "reauth", "Re-authorization needed"

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
        "Dynamics org URL", help_text="For example https://contoso.crm.dynamics.com"
    )
    auto_sync = models.BooleanField(
        default=True, help_text="Push every new lead to Dynamics as soon as it is captured."
    )
    primary_object = models.CharField(
        max_length=10, choices=PrimaryObject.choices, default=PrimaryObject.LEAD
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


class SyncLog(models.Model):
    """One sync attempt of one lead: what was decided, in which record, and any error."""

    class Outcome(models.TextChoices):
        CREATED = "created", "Created"
        UPDATED = "updated", "Updated"
        FAILED = "failed", "Failed"
        # A retryable failure: the lead stays queued and the task runs again.
        RETRYING = "retrying", "Retrying"

    integration = models.ForeignKey(Integration, on_delete=models.CASCADE, related_name="logs")
    lead = models.ForeignKey("leads.Lead", on_delete=models.CASCADE, related_name="sync_logs")
    outcome = models.CharField(max_length=10, choices=Outcome.choices)
    dynamics_entity = models.CharField(max_length=20, blank=True)
    dynamics_record_id = models.CharField(max_length=36, blank=True)
    message = models.TextField(blank=True)
    # Decision details: how the record was matched and which columns were written.
    details = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"Lead {self.lead_id}: {self.outcome}"
