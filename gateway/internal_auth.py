"""Authentication of the /internal/ API: a shared service token, never a user's credentials.

Internal views list only ``ServiceTokenAuthentication``, so a user's session cookie or API token
is simply not looked at there; and this class is not in the public API's defaults, so the service
token does not authenticate anyone on the public API either.
"""

import hmac

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions, permissions
from rest_framework.request import Request
from rest_framework.views import APIView

KEYWORD = "Service"


class InternalCaller:
    """The identity of a request authenticated by the service token (not a user)."""

    is_authenticated = True
    is_anonymous = False
    pk = None

    def __str__(self) -> str:
        return "internal-service"


class ServiceTokenAuthentication(authentication.BaseAuthentication):
    """``Authorization: Service <CHORUS_INTERNAL_API_TOKEN>``, compared in constant time."""

    def authenticate(self, request: Request) -> tuple[InternalCaller, None] | None:
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != KEYWORD.lower().encode():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Malformed service token header.")
        expected = settings.CHORUS_INTERNAL_API_TOKEN.encode()
        # An unset token must not match an empty one; compare_digest keeps the timing flat.
        if not expected or not hmac.compare_digest(header[1], expected):
            raise exceptions.AuthenticationFailed("Invalid service token.")
        return InternalCaller(), None

    def authenticate_header(self, request: Request) -> str:
        return f'{KEYWORD} realm="internal"'


class IsInternalCaller(permissions.BasePermission):
    def has_permission(self, request: Request, view: APIView) -> bool:
        return isinstance(request.user, InternalCaller)


class ServiceTokenScheme(OpenApiAuthenticationExtension):
    """Documents the service token in the OpenAPI schema."""

    target_class = ServiceTokenAuthentication
    name = "serviceToken"

    def get_security_definition(self, auto_schema: object) -> dict[str, str]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": f"`{KEYWORD} <CHORUS_INTERNAL_API_TOKEN>`",
        }
