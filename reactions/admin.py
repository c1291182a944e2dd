from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from reactions.hot import stream_hot_pin
from reactions.models import CommentReaction, TapCounter
from realtime.extensions import register_stream_admin_action
from realtime.models import Stream


@admin.register(TapCounter)
class TapCounterAdmin(admin.ModelAdmin):
    """Read-only: counters are written only by the flush and reconcile_counters (CRDT merge)."""

    list_display = ("stream", "kind", "replica", "count", "updated_at")
    list_filter = ("kind",)
    search_fields = ("stream__slug", "replica")
    list_select_related = ("stream",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: TapCounter | None = None) -> bool:
        return False


@admin.register(CommentReaction)
class CommentReactionAdmin(admin.ModelAdmin):
    list_display = ("comment", "user", "kind", "created_at", "removed_at")
    list_filter = ("kind",)
    raw_id_fields = ("comment", "user")


def _pin(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Stream], mode: str | None) -> None:
    for stream in queryset:
        stream_hot_pin(stream_id=stream.id, mode=mode)
    modeladmin.message_user(
        request, f"{queryset.count()} stream(s) pinned {mode or 'to their rate'}.", messages.SUCCESS
    )


# Actions on the streams' admin page (realtime/admin.py): how a stream counts taps is this app's business.
@admin.action(description="Pin selected streams hot (split counters, coalesced counts)")
def pin_hot(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Stream]) -> None:
    _pin(modeladmin, request, queryset, "hot")


@admin.action(description="Pin selected streams cold")
def pin_cold(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Stream]) -> None:
    _pin(modeladmin, request, queryset, "cold")


@admin.action(description="Unpin selected streams (hot or cold by their rate)")
def unpin(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Stream]) -> None:
    _pin(modeladmin, request, queryset, None)


for _action in (pin_hot, pin_cold, unpin):
    register_stream_admin_action(_action)
