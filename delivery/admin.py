"""Dead letters in the Django admin: filter, read, replay or discard; plus the outbox for diagnosis."""

import json
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils.html import format_html

from delivery.models import DeadLetter, OutboxMessage
from delivery.selectors import dead_letter_counts
from delivery.services import dead_letter_discard, dead_letter_replay


def _pretty(value: object) -> str:
    return format_html("<pre style='white-space:pre-wrap'>{}</pre>", json.dumps(value, indent=2, ensure_ascii=False))


@admin.register(DeadLetter)
class DeadLetterAdmin(admin.ModelAdmin):
    list_display = ("id", "task_name", "exception_type", "attempts", "status", "routed_by", "last_failed_at")
    list_filter = ("status", "task_name", "exception_type", "routed_by", ("last_failed_at", admin.DateFieldListFilter))
    search_fields = ("message_id", "task_name", "exception_type", "exception_message")
    date_hierarchy = "last_failed_at"
    actions = ("replay_selected", "discard_selected")
    fields = (
        "task_name",
        "message_id",
        "status",
        "status_changed_at",
        "replayed_message_id",
        "queue",
        "routed_by",
        "attempts",
        "first_failed_at",
        "last_failed_at",
        "exception_type",
        "exception_message",
        "payload",
        "formatted_traceback",
    )
    readonly_fields = fields
    change_list_template = "admin/delivery/deadletter/change_list.html"

    @admin.display(description="payload (args, kwargs)")
    def payload(self, letter: DeadLetter) -> str:
        return _pretty({"args": letter.args, "kwargs": letter.kwargs})

    @admin.display(description="traceback")
    def formatted_traceback(self, letter: DeadLetter) -> str:
        return format_html("<pre style='white-space:pre-wrap'>{}</pre>", letter.traceback or "(none recorded)")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: DeadLetter | None = None) -> bool:
        # Read-only detail page; state changes only through the replay/discard actions.
        return False

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        extra_context = {**(extra_context or {}), "dead_letter_counts": dead_letter_counts()}
        return super().changelist_view(request, extra_context=extra_context)

    def get_actions(self, request: HttpRequest) -> dict:
        # Replay and discard are state changes: keep them for staff with the change permission.
        actions = super().get_actions(request)
        if not request.user.has_perm("delivery.change_deadletter"):
            actions.pop("replay_selected", None)
            actions.pop("discard_selected", None)
        return actions

    @admin.action(description="Replay selected dead letters (same arguments, same idempotency key)")
    def replay_selected(self, request: HttpRequest, queryset: QuerySet[DeadLetter]) -> None:
        done = [letter.id for letter in queryset if dead_letter_replay(dead_letter_id=letter.id)]
        self._report(request, "replayed", done, queryset.count())

    @admin.action(description="Discard selected dead letters")
    def discard_selected(self, request: HttpRequest, queryset: QuerySet[DeadLetter]) -> None:
        done = [letter.id for letter in queryset if dead_letter_discard(dead_letter_id=letter.id)]
        self._report(request, "discarded", done, queryset.count())

    def _report(self, request: HttpRequest, verb: str, done: list[int], asked: int) -> None:
        self.message_user(request, f"{len(done)} dead letter(s) {verb}.", messages.SUCCESS)
        if len(done) < asked:
            self.message_user(
                request, f"{asked - len(done)} skipped: only open dead letters can be {verb}.", messages.WARNING
            )


@admin.register(OutboxMessage)
class OutboxMessageAdmin(admin.ModelAdmin):
    list_display = ("id", "task_name", "message_id", "created_at", "dispatched_at", "attempts", "redrive_at", "done_at")
    list_filter = ("task_name", ("done_at", admin.EmptyFieldListFilter))
    search_fields = ("message_id", "task_name")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: OutboxMessage | None = None) -> bool:
        return False
