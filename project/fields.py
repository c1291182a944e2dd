"""Serializer fields that accept exactly the JSON the schema documents.

DRF's ``CharField`` also takes numbers (``0`` becomes ``"0"``) and its ``UUIDField`` takes
integers and booleans (``false`` becomes the nil UUID) and any spelling ``uuid.UUID`` reads. The
API's schema says "string" and "uuid", so its serializers refuse anything else with a 400.
"""

import re
from typing import Any

from rest_framework import serializers

from project.url_patterns import UUID

_UUID = re.compile(UUID)


class TextField(serializers.CharField):
    """A JSON string, never a number."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class SlugField(serializers.SlugField):
    """A slug given as a JSON string."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class UUIDField(serializers.UUIDField):
    """A UUID in its canonical, hyphenated spelling (JSON Schema's ``format: uuid``), as a JSON string."""

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, str) or not _UUID.fullmatch(data):
            self.fail("invalid", value=data)
        return super().to_internal_value(data)
