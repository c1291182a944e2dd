from django.contrib import admin

from comments.models import Comment


@admin.register(Comment)
class CommentAdmin(admin.ModelAdmin):
    list_display = ("id", "stream", "seq", "author", "status", "created_at")
    list_filter = ("status", "stream")
    search_fields = ("id", "body", "author__username", "idempotency_key")
    list_select_related = ("stream", "author")
    readonly_fields = (
        "seq",
        "version",
        "idempotency_key",
        "request_fingerprint",
        "created_at",
        "updated_at",
        "published_at",
    )
    raw_id_fields = ("parent", "author")
