"""Django REST framework, OpenAPI and the product limits of the public API."""

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Token first: an anonymous request then gets 401 with WWW-Authenticate, not a bare 403.
        # DRF's TokenAuthentication with its lookup cached per process (CHORUS_TOKEN_CACHE_SECONDS).
        "project.token_auth.CachedTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticatedOrReadOnly"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_SCHEMA_CLASS": "project.openapi.ChorusAutoSchema",
    "EXCEPTION_HANDLER": "project.api_errors.api_exception_handler",
    # Every write spends a gateway bucket unless its view names its own throttles (gateway/throttles.py).
    "DEFAULT_THROTTLE_CLASSES": ["gateway.throttles.GatewayThrottle"],
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Chorus API",
    "DESCRIPTION": "Live comments and reactions: durable writes, sequenced real-time events.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Request bodies get their own components, with what validation demands (non-blank: minLength 1).
    "COMPONENT_SPLIT_REQUEST": True,
    # A PATCH takes the same fields as the serializer requires (an edit needs its body), not a partial copy.
    "COMPONENT_SPLIT_PATCH": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}
