"""Who a stream socket belongs to: anonymous, ``?token=`` or the session cookie, resolved once at connect.

Users are looked up in batches (``realtime.lookups``): many sockets of different users connecting
together share a query, and each must still get its own user.
"""

import asyncio
import json

import pytest
import websockets
from django.conf import settings
from django.test import Client
from rest_framework.authtoken.models import Token

from realtime.events import user_frame_broadcast
from realtime.models import Stream
from tests.conftest import Stack
from tests.factories import UserFactory
from tests.support.ws import WsClient

pytestmark = pytest.mark.django_db(transaction=True)


def _session_cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


def _signed_in(client: WsClient) -> bool:
    """A tap of an unknown kind: refused for its kind when signed in, for being anonymous otherwise."""
    client.send({"type": "reaction", "kind": "no-such-kind"})
    error = client.wait_for(
        lambda frames: next((f for f in frames if f.get("type") == "error"), None), timeout=10, what="an answer"
    )
    return error["code"] != "auth_required"


def test_session_cookie_token_and_anonymous_sockets(live: Stack, stream: Stream) -> None:
    """A session or a token signs a socket in; no credential, a bad token, a session older than the password do not."""
    user = UserFactory.create()
    cookie = _session_cookie(user)
    stale_cookie = _session_cookie(user)  # a second session, never used before the password changes
    token = Token.objects.create(user=user).key
    url = f"{live.nodes[0].ws}/ws/streams/{stream.slug}/"

    sockets = {
        "session": WsClient(url, headers={"Cookie": cookie}),
        "token": WsClient(f"{url}?token={token}"),
        "anonymous": WsClient(url),
        "bad token": WsClient(f"{url}?token=not-a-token"),
    }
    user.set_password("a new password")
    user.save(update_fields=["password"])
    sockets["session after the password changed"] = WsClient(url, headers={"Cookie": stale_cookie})
    try:
        assert {name: _signed_in(client) for name, client in sockets.items()} == {
            "session": True,
            "token": True,
            "anonymous": False,
            "bad token": False,
            "session after the password changed": False,
        }
    finally:
        for client in sockets.values():
            client.close()


async def _connect_all(urls_and_headers: list[tuple[str, dict[str, str]]]) -> list[websockets.ClientConnection]:
    async def one(url: str, headers: dict[str, str]) -> websockets.ClientConnection:
        ws = await websockets.connect(url, additional_headers=headers, open_timeout=30)
        hello = json.loads(await asyncio.wait_for(ws.recv(), timeout=30))
        assert hello["type"] == "hello", hello
        return ws

    return await asyncio.gather(*(one(url, headers) for url, headers in urls_and_headers))


async def _own_frames(sockets: list[websockets.ClientConnection], stream_id: int, user_ids: list[int]) -> list[int]:
    """Send each user a frame naming them; return, per socket, the user named in the frame it got."""
    for user_id in user_ids:
        await asyncio.to_thread(
            user_frame_broadcast, stream_id=stream_id, user_id=user_id, kind="test", frame=json.dumps({"for": user_id})
        )

    async def named(ws: websockets.ClientConnection) -> int:
        while True:
            frame = json.loads(await asyncio.wait_for(ws.recv(), timeout=30))
            if "for" in frame:
                return frame["for"]

    try:
        return await asyncio.gather(*(named(ws) for ws in sockets))
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets))


def test_many_users_connecting_at_once_each_get_their_own_user(live: Stack, stream: Stream) -> None:
    """60 sockets of 60 users (tokens and sessions) opened together: every one is its own user."""
    users = [UserFactory.create() for _ in range(60)]
    url = f"{live.nodes[1].ws}/ws/streams/{stream.slug}/"
    targets = [
        (f"{url}?token={Token.objects.create(user=user).key}", {})
        if i % 2
        else (url, {"Cookie": _session_cookie(user)})
        for i, user in enumerate(users)
    ]

    async def scenario() -> list[int]:
        sockets = await _connect_all(targets)
        return await _own_frames(sockets, stream.id, [user.pk for user in users])

    assert asyncio.run(scenario()) == [user.pk for user in users]
