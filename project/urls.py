"""URL map: public API under /api/v1/, docs under /api/, the admin, the demo page."""

from django.contrib import admin
from django.contrib.auth.views import LoginView
from django.urls import URLPattern, URLResolver, include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.authtoken.views import obtain_auth_token

from gateway.anonymous import ip_rate_limited
from gateway.metrics import metrics_view
from project.health import healthz
from realtime.pages import stream_page

api_v1: list[URLPattern | URLResolver] = [
    path("", include("comments.urls")),
    path("", include("sagas.urls")),
    path("auth/token", ip_rate_limited(obtain_auth_token, group="auth-token"), name="auth-token"),
    path("", include("reactions.urls")),
    path("", include("realtime.urls")),
]

urlpatterns = [
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    # The admin's sign-in has the same per-address limit as the other sign-ins.
    path("admin/login/", ip_rate_limited(admin.site.login, group="admin-login"), name="admin-login"),
    path("admin/", admin.site.urls),
    path("accounts/login/", ip_rate_limited(LoginView.as_view(), group="login"), name="login"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("streams/<slug:slug>/", stream_page, name="stream-page"),
    path("healthz", healthz, name="healthz"),
    path("internal/", include("gateway.internal_urls")),
    path("metrics", metrics_view, name="metrics"),
]

handler404 = "project.errors.not_found"
handler500 = "project.errors.server_error"
