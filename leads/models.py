from django.conf import settings
from django.db import models
from django.utils import timezone


class Lead(models.Model):
    """A person captured by a team member, and the state of its copy in Dynamics."""

    class SyncStatus(models.TextChoices):
        # Waiting for a sync: Auto Sync is off, or no integration is connected yet.
        PENDING = "pending", "Pending"
        # A background task is enqueued or running.
        QUEUED = "queued", "Queued"
        SYNCED = "synced", "Synced"
        # The sync rules left Dynamics unchanged, for example for a qualified lead.
        SKIPPED = "skipped", "Skipped"
        FAILED = "failed", "Failed"

    team = models.ForeignKey("teams.Team", on_delete=models.CASCADE, related_name="leads")
    captured_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="captured_leads"
    )
    captured_at = models.DateTimeField(auto_now_add=True)

    first_name = models.CharField(max_length=100, blank=True)
    last_name = models.CharField(max_length=100, blank=True)
    email = models.EmailField(max_length=254, blank=True)
    phone = models.CharField(max_length=50, blank=True)
    company = models.CharField(max_length=200, blank=True)
    job_title = models.CharField(max_length=200, blank=True)
    website = models.CharField(max_length=300, blank=True)
    notes = models.TextField(blank=True)
    mobile_phone = models.CharField(max_length=50, blank=True)
    street = models.CharField(max_length=250, blank=True)
    city = models.CharField(max_length=100, blank=True)
    postal_code = models.CharField(max_length=20, blank=True)
    region = models.CharField("State or province", max_length=100, blank=True)
    country = models.CharField(max_length=100, blank=True)

    class Source(models.TextChoices):
        API = "api", "API"
        ADMIN = "admin", "Admin"
        VCARD = "vcard", "vCard import"
        CSV = "csv", "CSV import"

    source = models.CharField(max_length=10, choices=Source.choices, default=Source.API)
    # The capturing client's own id for this lead (an app-generated UUID, an
    # Idempotency-Key, or an import's row key): a capture sent again with the same
    # reference returns the first lead instead of creating a second one.
    client_reference = models.CharField(max_length=200, blank=True)

    sync_status = models.CharField(
        max_length=10, choices=SyncStatus.choices, default=SyncStatus.PENDING, db_index=True
    )
    # Logical name of the Dynamics table the lead landed in ("lead" or "contact").
    dynamics_entity = models.CharField(max_length=20, blank=True)
    dynamics_record_id = models.CharField(max_length=36, blank=True)
    last_sync_error = models.TextField(blank=True)
    last_synced_at = models.DateTimeField(null=True, blank=True)
    # Attempts of the current sync, which a transient failure retries up to a limit. A
    # final outcome (synced, skipped, failed or waiting) sets it back to 0.
    sync_attempts = models.PositiveIntegerField(default=0)
    # When the lead was last queued, or when its scheduled retry is due. The sweep queues
    # a lead again when this is too long ago.
    sync_queued_at = models.DateTimeField(null=True, blank=True)
    # The task run that syncs the lead now, and until when its claim holds. A claim of a
    # killed worker expires, and the lead can be claimed again.
    sync_claim = models.CharField(max_length=32, blank=True)
    sync_claimed_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-captured_at", "-id"]
        indexes = [
            models.Index(fields=["team", "sync_status"]),
            models.Index(fields=["sync_status", "sync_queued_at"]),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["captured_by", "client_reference"],
                condition=~models.Q(client_reference=""),
                name="one_lead_per_client_reference",
            ),
        ]

    @property
    def sync_state_label(self):
        """The sync status as people read it: a queued lead that a worker has claimed
        shows as "Syncing"."""
        if (self.sync_status == self.SyncStatus.QUEUED and self.sync_claimed_until
                and self.sync_claimed_until > timezone.now()):
            return "Syncing"
        return self.get_sync_status_display()

    def __str__(self):
        name = f"{self.first_name} {self.last_name}".strip()
        return name or self.email or self.phone or f"Lead {self.pk}"
