from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from realtime.models import Stream, StreamEvent
from realtime.services import stream_close, stream_open


@admin.register(Stream)
class StreamAdmin(admin.ModelAdmin):
    list_display = ("slug", "title", "epoch", "last_seq", "closed_at", "created_at")
    list_filter = (("closed_at", admin.EmptyFieldListFilter),)
    search_fields = ("slug", "title")
    # The epoch changes only through stream_epoch_bump (manage.py stream_reset).
    readonly_fields = ("epoch", "epoch_seq", "last_seq", "created_at", "closed_at")
    actions = ("close_selected", "reopen_selected", "pin_hot", "pin_cold", "unpin")

    @admin.action(description="Close selected streams to new comments")
    def close_selected(self, request: HttpRequest, queryset: QuerySet[Stream]) -> None:
        for stream in queryset:
            stream_close(slug=stream.slug)
        self.message_user(request, f"{queryset.count()} stream(s) closed.", messages.SUCCESS)

    @admin.action(description="Reopen selected streams")
    def reopen_selected(self, request: HttpRequest, queryset: QuerySet[Stream]) -> None:
        for stream in queryset:
            stream_open(slug=stream.slug, title=stream.title)
        self.message_user(request, f"{queryset.count()} stream(s) open.", messages.SUCCESS)

    def _pin(self, request: HttpRequest, queryset: QuerySet[Stream], mode: str | None) -> None:
        from reactions.hot import stream_hot_pin

        for stream in queryset:
            stream_hot_pin(stream_id=stream.id, mode=mode)
        self.message_user(request, f"{queryset.count()} stream(s) pinned {mode or 'to their rate'}.", messages.SUCCESS)

    @admin.action(description="Pin selected streams hot (split counters, coalesced counts)")
    def pin_hot(self, request: HttpRequest, queryset: QuerySet[Stream]) -> None:
        self._pin(request, queryset, "hot")

    @admin.action(description="Pin selected streams cold")
    def pin_cold(self, request: HttpRequest, queryset: QuerySet[Stream]) -> None:
        self._pin(request, queryset, "cold")

    @admin.action(description="Unpin selected streams (hot or cold by their rate)")
    def unpin(self, request: HttpRequest, queryset: QuerySet[Stream]) -> None:
        self._pin(request, queryset, None)


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
