"""Admins pin a user's rate-limit tier here; saving goes through ``user_tier_set``."""

from typing import Any

import redis
from django.contrib import admin
from django.db import transaction
from django.http import HttpRequest

from gateway.models import UserTier
from gateway.selectors import user_tier_current
from gateway.services import user_tier_mirror, user_tier_set


@admin.register(UserTier)
class UserTierAdmin(admin.ModelAdmin):
    list_display = ("user", "tier", "pinned", "current_tier", "updated_at")
    list_filter = ("tier", "pinned")
    search_fields = ("user__username",)
    raw_id_fields = ("user",)
    readonly_fields = ("current_tier",)

    @admin.display(description="tier applied now")
    def current_tier(self, obj: UserTier) -> str:
        if obj.user_id is None:
            return "-"
        try:
            return user_tier_current(user_id=obj.user_id)
        except redis.RedisError:
            return "unknown (Redis unreachable)"

    def get_readonly_fields(self, request: HttpRequest, obj: UserTier | None = None) -> tuple[str, ...]:
        # The row is keyed by its user: change the tier, or delete the row and add another.
        return ("current_tier", "user") if obj is not None else ("current_tier",)

    def save_model(self, request: HttpRequest, obj: UserTier, form: Any, change: bool) -> None:
        saved = user_tier_set(user_id=obj.user_id, tier=obj.tier, pinned=obj.pinned, note=obj.note)
        obj.pk = saved.pk

    def delete_model(self, request: HttpRequest, obj: UserTier) -> None:
        user_id = obj.user_id
        super().delete_model(request, obj)
        transaction.on_commit(lambda: user_tier_mirror(user_id=user_id, tier=None))
