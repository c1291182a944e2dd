"""The WebSocket protocol: frame encoding and close codes, shared by server, tests and clients.

Server frames (JSON text):
  {"type": "hello", "stream": slug, "head": N}                 once, after connect
  {"type": "event", "seq": N, "id": uuid, "event": type, "data": {...}}
  {"type": "pong"}                                               answer to {"type": "ping"}
  {"type": "error", "code": str, "message": str}                 a bad client frame; socket stays open
Client frames:
  {"type": "resync", "after": N}   re-send every event after N up to what was already delivered
  {"type": "ping"}
"""

import json
from typing import Any

# Close codes (4000-4999 are the application's own range in RFC 6455).
CLOSE_BAD_REQUEST = 4400  # malformed connection parameters, e.g. a non-numeric ``after``
CLOSE_STREAM_NOT_FOUND = 4404  # no stream with that slug


def _dumps(value: dict[str, Any]) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def event_frame(*, seq: int, event_id: str, event_type: str, payload: dict[str, Any]) -> str:
    """Encode one event; called once per event (not per subscriber) and sent verbatim."""
    return _dumps({"type": "event", "seq": seq, "id": event_id, "event": event_type, "data": payload})


def hello_frame(*, stream: str, head: int) -> str:
    return _dumps({"type": "hello", "stream": stream, "head": head})


def error_frame(*, code: str, message: str) -> str:
    return _dumps({"type": "error", "code": code, "message": message})


PONG_FRAME = _dumps({"type": "pong"})
