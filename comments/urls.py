from django.urls import re_path

from comments.api import CommentDetailView, StreamCommentsView
from project.url_patterns import SLUG, UUID

urlpatterns = [
    re_path(rf"^streams/(?P<slug>{SLUG})/comments/?$", StreamCommentsView.as_view(), name="stream-comments"),
    re_path(rf"^comments/(?P<comment_id>{UUID})/?$", CommentDetailView.as_view(), name="comment-detail"),
]
