from django.urls import re_path

from reactions.api import StreamReactionsView

urlpatterns = [
    re_path(r"^streams/(?P<slug>[-a-zA-Z0-9_]+)/reactions/?$", StreamReactionsView.as_view(), name="stream-reactions"),
]
