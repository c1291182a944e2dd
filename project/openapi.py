"""The OpenAPI schema's shared rules: the error shape, the error statuses, and input as strict as validation.

Every operation documents, in the one JSON error shape (``project/api_errors.py``), the statuses
that the machinery around its view can answer, derived here once from the view rather than
written op by op:

- 400 when it reads a body or query or header parameters (``invalid``, ``parse_error``);
- 401 when it authenticates (a wrong token is refused even where no credentials are needed);
- 403 when a session may call it with an unsafe method (the CSRF check);
- 404 when its path names something (a stream, a comment, a saga) that may not exist;
- 413 and 415 when it takes a body (over ``CHORUS_MAX_REQUEST_BYTES``; not JSON);
- 429 when a bucket limits it: every write (``gateway.throttles``, the sign-in limit), and reads
  open to anonymous callers;
- 503 everywhere: no request thread free, the database or the limiter unreachable, load shed.

Statuses particular to an operation (409, 412, 422, 428, ...) stay in its ``extend_schema``;
they get the error shape here too. ``tests/test_api_contract.py`` holds the schema to it.
"""

from typing import Any

from drf_spectacular.openapi import AutoSchema
from rest_framework import serializers
from rest_framework.authentication import SessionAuthentication

from project.fields import TextField

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

# What the API's error statuses mean wherever they are not described more precisely.
GENERIC_ERRORS = {
    "400": "Invalid input: `fields` names each bad field, query parameter or header.",
    "401": "Credentials needed, or the ones given are not valid.",
    "403": "Not allowed (for a session: the CSRF check failed).",
    "404": "No such resource.",
    "413": "The request body is over `CHORUS_MAX_REQUEST_BYTES`; it was not read.",
    "415": "The body is not `application/json`.",
    "429": "Over a rate limit; retry after `Retry-After` seconds.",
    "503": "Unavailable or overloaded: nothing was done; retry after `Retry-After` seconds.",
}

RETRY_AFTER = {
    "Retry-After": {"schema": {"type": "integer", "minimum": 0}, "description": "Seconds to wait before retrying."}
}

# A non-blank DRF CharField: once str.strip() has trimmed it, a character is left, and it has no
# NUL character (DRF's ProhibitNullCharactersValidator). White space is spelled out as Python's
# str.isspace() has it: JSON Schema's \\s (ECMA 262) differs (0x1c-0x1f and 0x85 are not in it).
_PY_SPACE = "\\t-\\r\\u001c- \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000"
NON_BLANK_TEXT = f"^[^\\u0000]*[^\\u0000{_PY_SPACE}][^\\u0000]*$"
TEXT_WITHOUT_NUL = "^[^\\u0000]*$"


class ErrorSerializer(serializers.Serializer):
    """The JSON body of every error of the API."""

    code = serializers.CharField(help_text="Stable, machine-readable, e.g. `invalid`, `not_found`, `rate_limited`.")
    detail = serializers.CharField(help_text="For people.")
    # A declared field: DRF's metaclass takes it off the class, so it does not replace
    # Serializer.fields at run time; the stubs cannot know that.
    fields = serializers.DictField(  # type: ignore[assignment]
        child=serializers.JSONField(),
        required=False,
        help_text="Validation errors only: the messages of each bad field, query parameter or header.",
    )


class ChorusAutoSchema(AutoSchema):
    def get_operation(self, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        operation = super().get_operation(*args, **kwargs)
        if operation is None:
            return None
        responses = operation["responses"]
        for code in self._error_statuses(operation):
            responses.setdefault(code, {"description": GENERIC_ERRORS[code]})
        error = {"application/json": {"schema": self.resolve_serializer(ErrorSerializer, "response").ref}}
        for code, response in responses.items():
            if int(code) >= 400:
                response["content"] = error
                response.setdefault("description", GENERIC_ERRORS.get(code, ""))
                if code in ("429", "503"):
                    response["headers"] = RETRY_AFTER
        operation["responses"] = dict(sorted(responses.items()))
        return operation

    def _error_statuses(self, operation: dict[str, Any]) -> list[str]:
        parameters = operation.get("parameters", [])
        has_body = "requestBody" in operation
        unsafe = self.method in UNSAFE_METHODS
        authenticators = self.view.get_authenticators()
        security = operation.get("security")
        anonymous = not security or {} in security
        codes = ["503"]
        if has_body or any(p["in"] in ("query", "header") for p in parameters):
            codes.append("400")
        if authenticators:
            codes.append("401")
        if unsafe and any(isinstance(a, SessionAuthentication) for a in authenticators):
            codes.append("403")
        if any(p["in"] == "path" for p in parameters):
            codes.append("404")
        if has_body:
            codes += ["413", "415"]
        if unsafe or anonymous:
            codes.append("429")
        return codes

    def _map_serializer_field(self, field: Any, direction: str, bypass_extensions: bool = False) -> dict[str, Any]:
        schema = super()._map_serializer_field(field, direction, bypass_extensions)
        # Slugs, e-mail addresses and the like get their own pattern or format from drf-spectacular.
        plain_text = (type(field) is serializers.CharField or isinstance(field, TextField)) and "enum" not in schema
        if direction == "request" and plain_text and not field.read_only:
            schema["pattern"] = NON_BLANK_TEXT if field.trim_whitespace and not field.allow_blank else TEXT_WITHOUT_NUL
        return schema
