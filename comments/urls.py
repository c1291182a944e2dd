from django.urls import re_path

from comments.api import CommentDetailView, StreamCommentsView

urlpatterns = [
    re_path(r"^streams/(?P<slug>[-a-zA-Z0-9_]+)/comments/?$", StreamCommentsView.as_view(), name="stream-comments"),
    re_path(r"^comments/(?P<comment_id>[^/]+)/?$", CommentDetailView.as_view(), name="comment-detail"),
]
