"""A WebSocket frame fuzzer against real nodes, daphne and uvicorn, started as ``make run`` starts them.

Hypothesis generates client frames (JSON of every shape, the protocol's own frame types with wrong,
huge or missing fields, unknown types, deep nesting, binary frames, invalid UTF-8, messages near
the consumer's and the server's size caps) and sends them on an authenticated stream socket, each
followed by a ping. Every frame must be answered, before the pong, by what docs/API.md promises: a
frame the protocol accepts gets no error (a ping its pong), any other gets one error frame, and a
message the server itself refuses closes the socket with a documented code. The socket is never
closed with 1011 and never dropped without a close frame; afterwards the node logged no traceback
and a fresh client still receives a new comment. Derandomized, with a bounded number of examples.
"""

import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from django.conf import settings
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from tests.conftest import ApiUser
from tests.support.processes import ServedNode
from tests.support.rawws import RawWs
from tests.support.ws import WsClient

pytestmark = pytest.mark.django_db(transaction=True)

CAP_BYTES = 16384  # scripts/serve.sh's CHORUS_WS_MAX_MESSAGE_BYTES default: larger messages close 1009
FRAME_CHARS = 4096  # CHORUS_WS_MAX_INBOUND_FRAME's default: larger frames get an error frame
# Close codes docs/API.md documents for a client's message: 1007 text that is not UTF-8, 1009 too big.
DOCUMENTED_CLOSES = {1007, 1009}
# Refusals of a frame before it is read (docs/API.md): shedding, the per-user and per-socket limits.
REFUSALS = {"overloaded", "rate_limited", "unavailable"}
TEXT, BINARY = 1, 2
PING = '{"type": "ping"}'


@pytest.fixture(scope="module", params=["uvicorn", "daphne"])
def fuzz_node(request: pytest.FixtureRequest, stack: Any) -> Iterator[ServedNode]:
    """A node with the server flags of ``make run`` (its message cap); the per-socket inbound rate
    is lifted so every generated frame is read rather than dropped."""
    env = {"CHORUS_WS_INBOUND_RATE": "100000", "CHORUS_WS_INBOUND_BURST": "100000", "CHORUS_NODE_POOL": "fuzz"}
    node = ServedNode(f"fuzz-{request.param}", server=request.param, env=env).start()
    try:
        node.wait_ready()
        yield node
    finally:
        node.stop()


def _accepted(frame: object) -> bool:
    """Whether docs/API.md says the server takes this JSON frame without an error frame."""
    if not isinstance(frame, dict):
        return False

    def count(value: object, low: int, high: int) -> bool:
        if isinstance(value, str):
            try:
                value = int(value)
            except ValueError:
                return False
        return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high

    kind = frame.get("type")
    if kind == "ping":
        return True
    if kind == "resync":
        return count(frame.get("after"), 0, 2**62)
    if kind == "credit":
        return not isinstance(frame.get("n"), str) and count(frame.get("n"), 1, 1_000_000)
    if kind == "reaction":
        return isinstance(frame.get("kind"), str) and frame["kind"] in settings.CHORUS_REACTION_KINDS
    return False


def _expect(opcode: int, payload: bytes) -> str:
    """What the server must do with one message: "close" (the server's own refusal), "error" or "ok"."""
    if len(payload) > CAP_BYTES:
        return "close"
    if opcode == BINARY:
        return "error"
    try:
        text = payload.decode()
    except UnicodeDecodeError:
        return "close"
    if len(text) > FRAME_CHARS:
        return "error"
    try:
        frame = json.loads(text)
    except (ValueError, RecursionError):
        return "error"
    return "ok" if _accepted(frame) else "error"


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
)
json_values = st.recursive(
    json_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)  # fmt: skip
fields = st.sampled_from(["after", "n", "kind", "type", "data", ""])
protocol_frames = st.builds(
    lambda kind, extra: {"type": kind, **extra},
    st.sampled_from(["ping", "resync", "credit", "reaction", "event", "hello", "Ping", " ping"]) | json_values,
    st.dictionaries(
        fields,
        json_values
        | st.integers(min_value=-3, max_value=2**63)
        | st.sampled_from(["0", "7", "-1", "1e3", " 5", "heart", "HEART", "9" * 4000]),
        max_size=3,
    ),
)


def _text(value: object) -> tuple[int, bytes]:
    return TEXT, json.dumps(value, allow_nan=True).encode()


def _nested(depth: int, opener: str) -> tuple[int, bytes]:
    closer = {"[": "]", '{"a":': "}"}[opener]
    return TEXT, (opener * depth + "0" + closer * depth).encode()


def _chars(total: int) -> tuple[int, bytes]:
    """A ping frame of exactly ``total`` characters."""
    head = '{"type": "ping", "pad": "'
    return TEXT, (head + "x" * (total - len(head) - 2) + '"}').encode()


def _sized(total: int) -> tuple[int, bytes]:
    """A ping frame padded to ``total`` bytes of UTF-8 with two-byte characters (about half as many characters)."""
    head = '{"type": "ping", "pad": "'
    pad = total - len(head) - 2
    text = head + ("é" * (pad // 2)) + ("x" * (pad % 2)) + '"}'
    return TEXT, text.encode()


messages = st.one_of(
    protocol_frames.map(_text),
    json_values.map(_text),
    st.text(max_size=40).map(lambda text: (TEXT, text.encode())),
    st.binary(max_size=64).map(lambda data: (BINARY, data)),
    st.binary(min_size=1, max_size=32).map(lambda data: (TEXT, b"\xff" + data)),  # never valid UTF-8
    st.builds(
        _nested,
        st.sampled_from([2, 100, 999, 1000, 1500, 2000]) | st.integers(min_value=1, max_value=2040),
        st.sampled_from(["[", '{"a":']),
    ),
    st.integers(min_value=1, max_value=4000).map(lambda k: (TEXT, b'{"type": "resync", "after": ' + b"9" * k + b"}")),
    st.sampled_from([b"1e999999", b"-0", b"NaN", b"[]", b'""', b"{}", b'{"type": null}']).map(lambda b: (TEXT, b)),
    st.integers(min_value=FRAME_CHARS - 8, max_value=FRAME_CHARS + 8).map(_chars),
    st.integers(min_value=CAP_BYTES - 8, max_value=CAP_BYTES + 8).map(_sized),
)  # fmt: skip


class _Socket:
    """The fuzzed socket: reopened after each close, with every close code it saw."""

    def __init__(self, node: ServedNode, path: str) -> None:
        self.node, self.path = node, path
        self.closes: list[int | None] = []
        self.client = self._open()

    def _open(self) -> RawWs:
        client = RawWs(self.node.port, self.path, rcvbuf=1 << 16)
        frames, _ = client.read_all(timeout=10, stop=lambda f: f.get("type") == "hello")
        assert frames and frames[-1]["type"] == "hello", frames
        return client

    def exchange(self, opcode: int, payload: bytes) -> None:
        expected = _expect(opcode, payload)
        pongs = 2 if expected == "ok" and json.loads(payload).get("type") == "ping" else 1
        try:
            self.client.send(payload, opcode=opcode)
            self.client.send(PING)
        except OSError:
            pass  # closed by the server while sending: the close is read below
        seen = [0]

        def pong(frame: dict[str, Any]) -> bool:
            seen[0] += frame.get("type") == "pong"
            return seen[0] == pongs

        frames, code = self.client.read_all(timeout=15, stop=pong)
        errors = [f for f in frames if f.get("type") == "error"]
        what = f"{payload[:120]!r} ({len(payload)} bytes, opcode {opcode}): {frames[-3:]}, close {code}"
        if seen[0] < pongs:  # no answer: the socket must have been closed, and properly
            self.closes.append(code)
            self.client.close()
            assert code is not None, f"dropped without a close frame, or no answer, after {what}"
            assert code != 1011, f"1011 after {what}"
            assert code in DOCUMENTED_CLOSES, f"undocumented close after {what}"
            assert expected == "close", f"closed after {what}"
            self.client = self._open()
            return
        assert expected != "close", f"not closed after {what}"
        assert all(isinstance(e.get("code"), str) and isinstance(e.get("message"), str) for e in errors), what
        unexplained = [e for e in errors if e["code"] not in REFUSALS]
        if expected == "error":
            assert [e["code"] for e in unexplained] == ["bad_frame"], f"expected one bad_frame error for {what}"
        else:
            assert not unexplained, f"error for an accepted frame {what}"

    def close(self) -> None:
        self.client.close()


def test_fuzzed_frames_get_an_error_or_a_documented_close_and_the_node_keeps_serving(
    fuzz_node: ServedNode, live: Any, api_user: ApiUser, stream: Any, http: httpx.Client
) -> None:
    """Hundreds of generated frames: each answered as documented, no 1011, and the node still serves."""
    log_start = fuzz_node.log_path.stat().st_size
    socket = _Socket(fuzz_node, f"/ws/streams/{stream.slug}/?token={api_user.token}")

    @hypothesis_settings(
        derandomize=True,
        database=None,
        max_examples=300,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.lists(messages, min_size=1, max_size=4))
    # The edges, whatever the generator draws: nesting past Python's recursion limit, both caps.
    @example([_nested(2000, "["), _nested(800, '{"a":')])
    @example([_chars(FRAME_CHARS), _chars(FRAME_CHARS + 1), _sized(CAP_BYTES), _sized(CAP_BYTES + 1)])
    @example([(BINARY, b""), (TEXT, b"\xed\xa0\x80"), (TEXT, b""), (TEXT, b'{"type": "resync", "after": 1e400}')])
    def fuzz(batch: list[tuple[int, bytes]]) -> None:
        for opcode, payload in batch:
            socket.exchange(opcode, payload)

    try:
        fuzz()
    finally:
        socket.close()

    # then: the node logged no failure, and a fresh client gets a new comment
    with fuzz_node.log_path.open("rb") as log:
        log.seek(log_start)
        logged = log.read().decode(errors="replace")
    assert "Traceback" not in logged and not re.search(r"\bERROR\b", logged), logged[-3000:]
    client = WsClient(f"{fuzz_node.ws}/ws/streams/{stream.slug}/")
    body = f"after the fuzz {uuid.uuid4().hex[:6]}"
    answer = http.post(
        f"{fuzz_node.http}/api/v1/streams/{stream.slug}/comments",
        json={"body": body},
        headers={**api_user.headers, "Idempotency-Key": uuid.uuid4().hex},
    )
    assert answer.status_code == 202, answer.text
    client.wait_for(
        lambda frames: any(f.get("data", {}).get("body") == body for f in frames), timeout=20, what="the new comment"
    )
    client.close()
