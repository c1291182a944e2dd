"""Tiers of rate limiting a user is subject to, when an admin pins one."""

from django.conf import settings
from django.db import models


class Tier(models.TextChoices):
    REGULAR = "regular", "regular"
    HOT = "hot", "hot (stricter: sends far more than most)"
    TRUSTED = "trusted", "trusted"
    INTERNAL = "internal", "internal"


class UserTier(models.Model):
    """An admin's decision about a user's tier.

    With ``pinned`` the user stays in ``tier`` whatever their traffic; without it the row is only a
    note and the tier follows the user's recent rate (kept in Redis by the token-bucket script).
    ``gateway.services.user_tier_set`` keeps the Redis copy of the pin in step with this row.
    """

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="rate_tier")
    tier = models.CharField(max_length=16, choices=Tier.choices, default=Tier.REGULAR)
    pinned = models.BooleanField(default=True)
    note = models.CharField(max_length=200, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.user_id}: {self.tier}{' (pinned)' if self.pinned else ''}"
