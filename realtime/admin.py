from django.contrib import admin

from realtime.models import Stream, StreamEvent


@admin.register(Stream)
class StreamAdmin(admin.ModelAdmin):
    list_display = ("slug", "title", "last_seq", "created_at")
    search_fields = ("slug", "title")
    readonly_fields = ("last_seq", "created_at")


@admin.register(StreamEvent)
class StreamEventAdmin(admin.ModelAdmin):
    """The event log is the order of record: readable here, never editable."""

    list_display = ("stream", "seq", "type", "event_id", "created_at")
    list_filter = ("type",)
    search_fields = ("stream__slug", "event_id")
    list_select_related = ("stream",)

    def has_add_permission(self, request):  # type: ignore[no-untyped-def]
        return False

    def has_change_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False

    def has_delete_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False
