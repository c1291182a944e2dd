from django.urls import re_path

from project.url_patterns import SLUG, UUID
from reactions.api import CommentReactionsView, CommentReactionView, StreamReactionsView

urlpatterns = [
    re_path(rf"^streams/(?P<slug>{SLUG})/reactions/?$", StreamReactionsView.as_view(), name="stream-reactions"),
    re_path(
        rf"^comments/(?P<comment_id>{UUID})/reactions/?$", CommentReactionsView.as_view(), name="comment-reactions"
    ),
    re_path(
        rf"^comments/(?P<comment_id>{UUID})/reactions/(?P<kind>[^/]+)/?$",
        CommentReactionView.as_view(),
        name="comment-reaction",
    ),
]
