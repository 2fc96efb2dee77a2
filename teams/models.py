from django.conf import settings
from django.db import models


class Team(models.Model):
    """A sales team: its members capture leads, its admins manage the integration."""

    name = models.CharField(max_length=200, unique=True)
    # ISO 3166 region used to read phone numbers written without a country code.
    default_phone_region = models.CharField(max_length=2, default="US")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name


class Membership(models.Model):
    """A user's place in a team, with the role that decides what they may manage."""

    class Role(models.TextChoices):
        ADMIN = "admin", "Admin"
        MEMBER = "member", "Member"

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    joined_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["team", "user"], name="unique_team_membership"),
        ]

    def __str__(self):
        return f"{self.user} in {self.team} ({self.role})"


class Subteam(models.Model):
    """A group inside a team, which may have its own admins and its own integration."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="subteams")
    name = models.CharField(max_length=200)

    class Meta:
        ordering = ["team__name", "name"]
        constraints = [
            models.UniqueConstraint(fields=["team", "name"], name="unique_subteam_name"),
        ]

    def __str__(self):
        return f"{self.team} / {self.name}"


class SubteamMembership(models.Model):
    """A team member's place in a subteam. Subteam admins manage only that subteam."""

    subteam = models.ForeignKey(Subteam, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="subteam_memberships"
    )
    is_admin = models.BooleanField(default=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["subteam", "user"], name="unique_subteam_membership"),
        ]

    def __str__(self):
        return f"{self.user} in {self.subteam}"
