from django.contrib import admin

from reactions.models import CommentReaction, TapCounter


@admin.register(TapCounter)
class TapCounterAdmin(admin.ModelAdmin):
    """Read-only: counters are written only by the flush and reconcile_counters (CRDT merge)."""

    list_display = ("stream", "kind", "replica", "count", "updated_at")
    list_filter = ("kind",)
    search_fields = ("stream__slug", "replica")
    list_select_related = ("stream",)

    def has_add_permission(self, request) -> bool:  # type: ignore[no-untyped-def]
        return False

    def has_change_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False


@admin.register(CommentReaction)
class CommentReactionAdmin(admin.ModelAdmin):
    list_display = ("comment", "user", "kind", "created_at", "removed_at")
    list_filter = ("kind",)
    raw_id_fields = ("comment", "user")
