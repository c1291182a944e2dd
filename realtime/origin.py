"""Origin checking for WebSockets that also admits non-browser clients."""

from typing import Any
from urllib.parse import ParseResult

from channels.security.websocket import OriginValidator
from django.conf import settings


class BrowserOriginValidator(OriginValidator):
    """Reject cross-site browser origins; allow clients that send no Origin at all.

    Browsers always send Origin, so a missing one means a native or server-side client, which
    cannot be used for cross-site WebSocket hijacking.
    """

    def valid_origin(self, parsed_origin: ParseResult | None) -> bool:
        if parsed_origin is None:
            return True
        return self.validate_origin(parsed_origin)


def browser_origin_validator(application: Any) -> BrowserOriginValidator:
    return BrowserOriginValidator(application, settings.ALLOWED_HOSTS)
