"""One JSON error shape for the whole API: ``{"code": ..., "detail": ..., "fields": {...}}``.

``fields`` (present for validation errors) maps each offending field, query parameter or header
to its messages, so a client can always tell what was wrong.
"""

import json
from typing import Any

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response


class ServiceUnavailable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "Service temporarily unavailable, try again later."
    default_code = "service_unavailable"


def _first_code(codes: Any) -> str:
    if isinstance(codes, str):
        return codes
    if isinstance(codes, list) and codes:
        return _first_code(codes[0])
    if isinstance(codes, dict) and codes:
        return _first_code(next(iter(codes.values())))
    return "error"


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    # Imported here: rest_framework.views loads the default throttles, which import this module.
    from rest_framework.views import exception_handler

    response = exception_handler(exc, context)
    if response is None or not isinstance(exc, exceptions.APIException):
        return response
    if isinstance(exc, exceptions.ValidationError):
        fields = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        names = ", ".join(fields)
        response.data = {"code": "invalid", "detail": f"Invalid input: {names}.", "fields": fields}
    else:
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        response.data = {"code": _first_code(exc.get_codes()), "detail": detail}
    return response


OVERLOADED = {"code": "overloaded", "detail": "The service is overloaded, try again shortly."}


def too_large(limit: int) -> dict[str, str]:
    """The error of a 413: the request body is over ``limit`` bytes (nothing was read past it, so
    the answer closes the connection)."""
    return {"code": "too_large", "detail": f"The request body is over {limit} bytes."}


def too_large_body(limit: int) -> bytes:
    return json.dumps(too_large(limit)).encode()


def overloaded_response() -> JsonResponse:
    """503 with ``Retry-After``: this node is too busy to take the request now; nothing was accepted."""
    response = JsonResponse(OVERLOADED, status=503)
    response["Retry-After"] = str(settings.CHORUS_RETRY_AFTER_SECONDS)
    return response


def json_not_found(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return JsonResponse({"code": "not_found", "detail": f"No such path: {request.path}"}, status=404)


def json_server_error(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"code": "server_error", "detail": "Internal server error."}, status=500)
