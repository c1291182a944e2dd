"""Oversized requests are refused at the edge, on both servers, before the server takes them in.

A body announced over ``CHORUS_MAX_REQUEST_BYTES`` gets ``413`` in the API's JSON shape before a
byte of it is sent; a chunked body gets it as soon as it grows past the limit. A WebSocket message
over the server's cap (``CHORUS_WS_MAX_MESSAGE_BYTES`` in ``scripts/serve.sh``) closes the socket
with 1009 instead of reaching the consumer. Nodes are started by ``scripts/serve.sh``.

The requests go to a Django view (comment-and-react): routes a fast lane answers in front of
Django refuse smaller bodies with the same 413 by their own limits.
"""

import json
import socket
from collections.abc import Iterator

import pytest
from django.conf import settings

from realtime.models import Stream
from tests.conftest import ApiUser
from tests.support.processes import ServedNode
from tests.support.ws import WsClient

SERVERS = ["uvicorn", "daphne"]
MAX_REQUEST_BYTES = settings.CHORUS_MAX_REQUEST_BYTES
WS_MAX_MESSAGE_BYTES = 16 * 1024  # scripts/serve.sh's default


@pytest.fixture(scope="module", params=SERVERS)
def node(request: pytest.FixtureRequest, django_db_setup: None) -> Iterator[ServedNode]:
    served = ServedNode(f"oversized-{request.param}", server=request.param).start()
    try:
        yield served.wait_ready()
    finally:
        served.stop()


def _saga_path(slug: str) -> str:
    return f"/api/v1/streams/{slug}/comment-and-react"


def _request_head(node: ServedNode, path: str, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{node.port}", "Content-Type: application/json"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Read one response (the server closes the connection after it), within the socket's timeout."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (h.partition(":") for h in header_lines)}
    return int(status_line.split()[1]), headers, body


def _assert_too_large(status: int, headers: dict[str, str], body: bytes) -> None:
    assert status == 413, body[:300]
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == {"code": "too_large", "detail": f"The request body is over {MAX_REQUEST_BYTES} bytes."}


def test_a_body_announced_over_the_limit_is_refused_before_it_is_sent(
    node: ServedNode, api_user: ApiUser, stream: Stream
) -> None:
    """Content-Length of 20 MB and not a byte of body: the answer is already a JSON 413."""
    with socket.create_connection(("127.0.0.1", node.port), timeout=10) as sock:
        headers = {"Content-Length": str(20 * 1024 * 1024), "Authorization": f"Token {api_user.token}"}
        sock.sendall(_request_head(node, _saga_path(stream.slug), headers))
        _assert_too_large(*_response(sock))


def test_a_chunked_body_is_refused_as_soon_as_it_grows_past_the_limit(
    node: ServedNode, api_user: ApiUser, stream: Stream
) -> None:
    """Chunks up to one byte past the limit, never the last chunk: the answer is a JSON 413."""
    with socket.create_connection(("127.0.0.1", node.port), timeout=10) as sock:
        headers = {"Transfer-Encoding": "chunked", "Authorization": f"Token {api_user.token}"}
        sock.sendall(_request_head(node, _saga_path(stream.slug), headers))
        sent, piece = 0, 16 * 1024
        while sent <= MAX_REQUEST_BYTES:
            size = min(piece, MAX_REQUEST_BYTES + 1 - sent)
            sock.sendall(f"{size:x}\r\n".encode() + b" " * size + b"\r\n")
            sent += size
        _assert_too_large(*_response(sock))


def test_a_body_within_the_limit_is_read_and_answered_as_usual(
    node: ServedNode, api_user: ApiUser, stream: Stream
) -> None:
    """A large but allowed body reaches the view, which names the field that is too long."""
    body = json.dumps({"body": "x" * (MAX_REQUEST_BYTES - 100), "kind": "heart"}).encode()
    with socket.create_connection(("127.0.0.1", node.port), timeout=10) as sock:
        headers = {"Content-Length": str(len(body)), "Authorization": f"Token {api_user.token}", "Connection": "close"}
        sock.sendall(_request_head(node, _saga_path(stream.slug), headers) + body)
        status, _, answer = _response(sock)
    assert status == 400 and "body" in json.loads(answer)["fields"]


def test_a_websocket_message_over_the_servers_cap_closes_the_socket_with_1009(node: ServedNode, stream: Stream) -> None:
    """The server refuses the message itself (close 1009) instead of handing 64 KiB to the consumer."""
    client = WsClient(f"{node.ws}/ws/streams/{stream.slug}/")
    try:
        client.send(json.dumps({"type": "ping", "pad": "x" * (4 * WS_MAX_MESSAGE_BYTES)}))
        assert client.wait_closed(timeout=10) == 1009
    finally:
        client.close()


def test_a_websocket_message_under_the_cap_still_gets_the_consumers_error_frame(
    node: ServedNode, stream: Stream
) -> None:
    """Between the consumer's 4096 characters and the server's cap: an error frame, the socket stays open."""
    client = WsClient(f"{node.ws}/ws/streams/{stream.slug}/")
    try:
        client.send(json.dumps({"type": "ping", "pad": "x" * (WS_MAX_MESSAGE_BYTES // 2)}))
        error = client.wait_for(
            lambda frames: [f for f in frames if f["type"] == "error"], timeout=10, what="an error frame"
        )
        assert error[0]["code"] == "bad_frame"
        client.send({"type": "ping"})
        client.wait_for(lambda frames: [f for f in frames if f["type"] == "pong"], timeout=10, what="a pong")
        assert client.close_code is None
    finally:
        client.close()
