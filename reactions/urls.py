from django.urls import re_path

from reactions.api import CommentReactionsView, CommentReactionView, StreamReactionsView

urlpatterns = [
    re_path(r"^streams/(?P<slug>[-a-zA-Z0-9_]+)/reactions/?$", StreamReactionsView.as_view(), name="stream-reactions"),
    re_path(r"^comments/(?P<comment_id>[^/]+)/reactions/?$", CommentReactionsView.as_view(), name="comment-reactions"),
    re_path(
        r"^comments/(?P<comment_id>[^/]+)/reactions/(?P<kind>[^/]+)/?$",
        CommentReactionView.as_view(),
        name="comment-reaction",
    ),
]
