"""The WebSocket protocol: frame encoding and close codes, shared by server, tests and clients.

Server frames (JSON text):
  {"type": "hello", "stream": slug, "head": N}                 once, after connect
  {"type": "event", "seq": N, "id": uuid, "event": type, "data": {...}}
  {"type": "pong"}                                               answer to {"type": "ping"}
  {"type": "error", "code": str, "message": str}                 a bad client frame; socket stays open
  {"type": "error", "code": "too_far_behind", "message": str, "last_seq": N}
                                                                 then close 4408; resume with ?after=N
  {"type": "error", "code": "rate_limited", "message": str}      a frame over the inbound rate was dropped
  {"type": "presence", "viewers": N}                             approximate live viewers, all nodes
  {"type": "draining", "last_seq": N}                            the node is shutting down: close 4503
                                                                 follows; reconnect now (with jitter),
                                                                 through discovery, with ?after=N
Client frames:
  {"type": "resync", "after": N}   re-send every event after N up to what was already delivered
  {"type": "ping"}
  {"type": "credit", "n": K}       flow control: allow K more event frames (see docs/API.md)

Flow control: a socket is unlimited until its client sends a first credit frame. From then on the
server sends an event frame only while the client has credit (each event frame spends one; credit
frames add up) and holds later events (in its bounded buffer, then in the event log) until more
credit arrives. Hello, pong, error and snapshot frames (presence, reaction counts) spend no credit;
snapshots are coalesced to the latest of each kind while a client is behind. Events re-sent by a
resync spend no credit either, but wait like events while the credit is 0 or the write buffer full.
"""

import json
from typing import Any

# Close codes (4000-4999 are the application's own range in RFC 6455).
CLOSE_BAD_REQUEST = 4400  # malformed connection parameters, e.g. a non-numeric ``after``
CLOSE_STREAM_NOT_FOUND = 4404  # no stream with that slug
# The client is too far behind: its unread data stayed over CHORUS_WS_MAX_WRITE_BUFFER bytes for
# CHORUS_WS_STALL_SECONDS (a client that reads slowly is instead served from the event log at its
# own pace). The preceding error frame carries ``last_seq``, the last event delivered: reconnect
# with ``?after=last_seq`` to resume from the event log.
CLOSE_TOO_FAR_BEHIND = 4408
# The client kept sending after CHORUS_WS_INBOUND_STRIKES frames in a row were refused by the
# per-connection inbound rate limit (CHORUS_WS_INBOUND_RATE per second, burst CHORUS_WS_INBOUND_BURST).
CLOSE_RATE_LIMITED = 4429
# The node could not reach PostgreSQL or Redis while the socket was connecting (preceded by an
# error frame with code ``unavailable``): reconnect after a moment, through discovery. (RFC 6455's
# 1013 "try again later" is refused by daphne's WebSocket library.)
CLOSE_UNAVAILABLE = 4503
# The node is draining (shutting down): a ``draining`` frame with ``last_seq`` (the last event
# delivered; absent on a socket refused before any) precedes the close, whose reason is
# DRAINING_REASON. Reconnect at once, after a small random delay, through discovery or the balancer.
# The same code as CLOSE_UNAVAILABLE: both mean "this node cannot serve you now, another can".
CLOSE_DRAINING = CLOSE_UNAVAILABLE
DRAINING_REASON = "node draining"
CREDIT_MAX = 1_000_000  # largest ``n`` of one credit frame, and of a socket's total credit


def _dumps(value: dict[str, Any]) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def event_frame(*, seq: int, event_id: str, event_type: str, payload: dict[str, Any]) -> str:
    """Encode one event; called once per event (not per subscriber) and sent verbatim."""
    return _dumps({"type": "event", "seq": seq, "id": event_id, "event": event_type, "data": payload})


def hello_frame(*, stream: str, head: int) -> str:
    return _dumps({"type": "hello", "stream": stream, "head": head})


def error_frame(*, code: str, message: str, last_seq: int | None = None) -> str:
    frame: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if last_seq is not None:
        frame["last_seq"] = last_seq
    return _dumps(frame)


def draining_frame(*, last_seq: int | None) -> str:
    frame: dict[str, Any] = {"type": "draining"}
    if last_seq is not None:
        frame["last_seq"] = last_seq
    return _dumps(frame)


def presence_frame(*, viewers: int) -> str:
    return _dumps({"type": "presence", "viewers": viewers})


PONG_FRAME = _dumps({"type": "pong"})
