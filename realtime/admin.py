from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from realtime.extensions import stream_admin_actions
from realtime.models import Stream, StreamEvent
from realtime.services import stream_close, stream_open


@admin.register(Stream)
class StreamAdmin(admin.ModelAdmin):
    list_display = ("slug", "title", "epoch", "last_seq", "closed_at", "created_at")
    list_filter = (("closed_at", admin.EmptyFieldListFilter),)
    search_fields = ("slug", "title")
    # The epoch changes only through stream_epoch_bump (manage.py stream_reset).
    readonly_fields = ("epoch", "epoch_seq", "last_seq", "created_at", "closed_at")
    actions = ("close_selected", "reopen_selected")

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

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        """The stream actions of this app, and those other apps registered (``realtime.extensions``)."""
        actions: dict[str, Any] = super().get_actions(request)
        for action in stream_admin_actions:
            name = action.__name__
            actions[name] = (action, name, getattr(action, "short_description", name))
        return actions


@admin.register(StreamEvent)
class StreamEventAdmin(admin.ModelAdmin):
    """The event log is the order of record: readable here, never editable."""

    list_display = ("stream", "seq", "type", "event_id", "created_at")
    list_filter = ("type",)
    search_fields = ("stream__slug", "event_id")
    list_select_related = ("stream",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: StreamEvent | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: StreamEvent | None = None) -> bool:
        return False
