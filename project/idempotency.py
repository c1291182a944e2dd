"""The ``Idempotency-Key`` header of the API: how it is read, and the answer when it is reused.

Semantics follow the IETF draft "The Idempotency-Key HTTP Header Field": the same key with the
same request returns the first answer's resource; the same key with a different request is 422.
Keys are scoped to the authenticated user by the services that store them.
"""

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import exceptions, status
from rest_framework.request import Request
from rest_framework.response import Response

IDEMPOTENCY_HEADER = "Idempotency-Key"

IDEMPOTENCY_PARAMETER = OpenApiParameter(
    IDEMPOTENCY_HEADER,
    location=OpenApiParameter.HEADER,
    required=False,
    description="Retries with the same key return the same resource instead of making a new one.",
    pattern="^[ -~]{1,255}$",  # what idempotency_key_parse accepts: 1 to 255 printable ASCII characters
)
IDEMPOTENCY_KEY_REUSED_RESPONSE = OpenApiResponse(description="This Idempotency-Key was used for a different request.")


IDEMPOTENCY_KEY_REUSED = {
    "code": "idempotency_key_reused",
    "detail": f"This {IDEMPOTENCY_HEADER} was already used for a different request.",
    "fields": {IDEMPOTENCY_HEADER: ["Already used for a different request."]},
}


def idempotency_key_parse(value: str | None) -> str | None:
    """The key of a header value, or None; a malformed key is a 400 naming the header."""
    if value is None:
        return None
    if not value or len(value) > 255 or not value.isprintable() or not value.isascii():
        raise exceptions.ValidationError({IDEMPOTENCY_HEADER: ["Must be 1 to 255 printable ASCII characters."]})
    return value


def idempotency_key(request: Request) -> str | None:
    """The request's key, or None; a malformed key is a 400 naming the header."""
    return idempotency_key_parse(request.headers.get(IDEMPOTENCY_HEADER))


def idempotency_key_reused_response() -> Response:
    return Response(IDEMPOTENCY_KEY_REUSED, status=status.HTTP_422_UNPROCESSABLE_ENTITY)
