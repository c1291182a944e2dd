"""Rewrite the Redis copy of every pinned tier from the database (after Redis lost its data)."""

from typing import Any

from django.core.management.base import BaseCommand

from gateway.selectors import user_tiers_pinned
from gateway.services import user_tier_mirror


class Command(BaseCommand):
    help = "Mirror every pinned UserTier into Redis, where the rate-limit script reads it."

    def handle(self, *args: Any, **options: Any) -> None:
        pins = user_tiers_pinned()
        for user_id, tier in pins:
            user_tier_mirror(user_id=user_id, tier=tier)
        self.stdout.write(f"mirrored {len(pins)} pinned tiers")
