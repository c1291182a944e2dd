"""URLconf of the /internal/ API (service token only; see ``gateway.internal_auth``)."""

from django.urls import re_path

from gateway.internal_api import (
    InternalBulkDeleteView,
    InternalStreamCloseView,
    InternalStreamsView,
    InternalSystemCommentsView,
)
from project.url_patterns import SLUG

urlpatterns = [
    re_path(r"^streams/?$", InternalStreamsView.as_view(), name="internal-streams"),
    re_path(
        rf"^streams/(?P<slug>{SLUG})/system-comments/?$",
        InternalSystemCommentsView.as_view(),
        name="internal-system-comments",
    ),
    re_path(rf"^streams/(?P<slug>{SLUG})/close/?$", InternalStreamCloseView.as_view(), name="internal-stream-close"),
    re_path(r"^moderation/bulk-delete/?$", InternalBulkDeleteView.as_view(), name="internal-bulk-delete"),
]
