from django.urls import re_path

from project.url_patterns import SLUG, UUID
from sagas.api import CommentAndReactView, SagaDetailView, SagaRetryView

urlpatterns = [
    re_path(
        rf"^streams/(?P<slug>{SLUG})/comment-and-react/?$", CommentAndReactView.as_view(), name="comment-and-react"
    ),
    re_path(rf"^sagas/(?P<saga_id>{UUID})/retry/?$", SagaRetryView.as_view(), name="saga-retry"),
    re_path(rf"^sagas/(?P<saga_id>{UUID})/?$", SagaDetailView.as_view(), name="saga-detail"),
]
