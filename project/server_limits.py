"""Limits daphne does not apply by itself, installed by ``project/asgi.py`` only when daphne serves it.

- Request bodies: Twisted reads a whole request body (into memory, then a temporary file) before
  daphne hands the request to the application, so the application's 413
  (``project/asgi_handler.py``) would come only after the upload. Here daphne's request answers
  ``413`` in the API's JSON shape as soon as the ``Content-Length`` or the chunks received pass
  ``CHORUS_MAX_REQUEST_BYTES``, and drops the connection instead of reading the rest.
- WebSocket messages: daphne caps them (``--websocket-max-message-size``, set by
  ``scripts/serve.sh``), but autobahn then drops the TCP connection (``failByDrop``), which a
  client sees as 1006, an abnormal closure. With ``failByDrop`` off it closes with 1009
  ("message too big"), as uvicorn does.

Under uvicorn nothing here is installed: it hands the body over as it arrives, and closes with 1009
itself.
"""

import contextlib
from typing import Any

from django.conf import settings

from project.api_errors import too_large_body


def _refuse(request: Any) -> None:
    request.chorus_refused = True
    body = too_large_body(settings.CHORUS_MAX_REQUEST_BYTES)
    head = (
        b"HTTP/1.1 413 Content Too Large\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body)
    )
    request.channel.transport.write(head + body)
    request.channel.loseConnection()


def _limit_request_bodies(request_class: Any) -> None:
    got_length, handle_content_chunk, process = (
        request_class.gotLength,
        request_class.handleContentChunk,
        request_class.process,
    )
    limit = settings.CHORUS_MAX_REQUEST_BYTES

    def gotLength(self: Any, length: int | None) -> None:
        self.chorus_body_bytes = 0
        if length is not None and length > limit:
            got_length(self, 0)  # an empty body, never written to
            _refuse(self)
            return
        got_length(self, length)

    def handleContentChunk(self: Any, data: bytes) -> None:
        if getattr(self, "chorus_refused", False):
            return
        self.chorus_body_bytes += len(data)
        if self.chorus_body_bytes > limit:
            _refuse(self)
            return
        handle_content_chunk(self, data)

    def refused_or_process(self: Any) -> Any:
        if getattr(self, "chorus_refused", False):
            return None  # already answered; the whole body arrived in the same read
        return process(self)

    request_class.gotLength, request_class.handleContentChunk = gotLength, handleContentChunk
    request_class.process = refused_or_process
    request_class.chorus_limited = True


def _close_oversized_messages_with_1009(factory_class: Any) -> None:
    reset = factory_class.resetProtocolOptions

    def resetProtocolOptions(self: Any) -> None:
        reset(self)
        self.failByDrop = False

    factory_class.resetProtocolOptions = resetProtocolOptions


def daphne_limits_install() -> None:
    """Patch daphne's request and WebSocket factory classes (once; a no-op without daphne)."""
    with contextlib.suppress(ImportError):
        from daphne.http_protocol import WebRequest
        from daphne.ws_protocol import WebSocketFactory

        if not getattr(WebRequest, "chorus_limited", False):
            _limit_request_bodies(WebRequest)
            _close_oversized_messages_with_1009(WebSocketFactory)
