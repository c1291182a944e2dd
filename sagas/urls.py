from django.urls import re_path

from sagas.api import CommentAndReactView, SagaDetailView, SagaRetryView

urlpatterns = [
    re_path(
        r"^streams/(?P<slug>[-a-zA-Z0-9_]+)/comment-and-react/?$",
        CommentAndReactView.as_view(),
        name="comment-and-react",
    ),
    re_path(r"^sagas/(?P<saga_id>[^/]+)/retry/?$", SagaRetryView.as_view(), name="saga-retry"),
    re_path(r"^sagas/(?P<saga_id>[^/]+)/?$", SagaDetailView.as_view(), name="saga-detail"),
]
