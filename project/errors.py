"""Site-wide 404/500 handlers: JSON under /api/, Django's pages elsewhere."""

from django.http import HttpRequest, HttpResponse
from django.views import defaults

from project.api_errors import json_not_found, json_server_error


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if request.path.startswith(("/api/", "/internal/")):
        return json_not_found(request, exception)
    return defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    if request.path.startswith(("/api/", "/internal/")):
        return json_server_error(request)
    return defaults.server_error(request)
