from django.contrib import admin

from comments.models import Comment, CommentRevision


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
        "vector",
        "edit_id",
        "edit_rank",
        "edit_vector",
    )
    raw_id_fields = ("parent", "author")


@admin.register(CommentRevision)
class CommentRevisionAdmin(admin.ModelAdmin):
    list_display = ("comment", "edit_id", "created_at")
    search_fields = ("comment__id", "edit_id", "body")
    raw_id_fields = ("comment",)
