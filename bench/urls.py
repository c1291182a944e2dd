from django.urls import re_path

from bench.naive.views import NaiveTapView
from project.urls import urlpatterns as project_urlpatterns

urlpatterns = [
    re_path(r"^bench/naive/streams/(?P<slug>[-a-zA-Z0-9_]+)/reactions$", NaiveTapView.as_view()),
    *project_urlpatterns,
]
