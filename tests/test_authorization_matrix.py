"""Who may do what: every HTTP operation and every WebSocket client frame, as every kind of caller.

One table per transport. Each cell is the answer a caller gets: anonymous, another (regular)
user, the author of the comment or saga the request names, a staff user, and the service token
(``Authorization: Service ...``, or ``?token=`` on a socket). An operation of the schema, or a
frame type the consumer accepts, without a row fails ``test_every_*_has_a_row``.

Every cell runs against a fresh world (users, a stream, the author's published comment and saga),
so one caller's success (a delete, an edit) never decides the next caller's answer.
"""

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import httpx
import pytest
from django.core.cache import caches
from rest_framework.authtoken.models import Token

from comments.models import Comment, CommentStatus
from realtime.extensions import inbound_handlers
from tests.conftest import SERVICE_TOKEN
from tests.factories import StreamFactory, UserFactory
from tests.support.processes import AsgiNode
from tests.support.ws import WsClient

pytestmark = pytest.mark.django_db(transaction=True)

ROLES = ("anonymous", "other", "author", "staff", "service")


@dataclass
class Callers:
    """The three users (another user, the author, staff) and their tokens, made once per test:
    hashing their passwords is the slow part."""

    users: dict[str, Any]
    tokens: dict[str, str]


@pytest.fixture
def callers(transactional_db: None) -> Callers:
    # Only the author signs in with a password (the token row): the others' stay unusable, unhashed.
    users = {
        "other": UserFactory.create(password=None),
        "author": UserFactory.create(),
        "staff": UserFactory.create(password=None, is_staff=True),
    }
    return Callers(users=users, tokens={role: Token.objects.create(user=user).key for role, user in users.items()})


@dataclass
class World:
    """A fresh stream with the author's published comment and (on demand) saga."""

    node: AsgiNode
    http: httpx.Client
    callers: Callers

    def __post_init__(self) -> None:
        self.author = self.callers.users["author"]
        self.tokens = self.callers.tokens
        self.stream = StreamFactory.create(slug=f"m-{uuid.uuid4().hex[:10]}")
        self.comment = Comment.objects.create(
            stream=self.stream,
            author=self.author,
            body="the author's comment",
            status=CommentStatus.PUBLISHED,
            seq=1,
            idempotency_key=str(uuid.uuid4()),
        )

    def headers(self, role: str) -> dict[str, str]:
        if role == "anonymous":
            return {}
        if role == "service":
            return {"Authorization": f"Service {SERVICE_TOKEN}"}
        return {"Authorization": f"Token {self.tokens[role]}"}

    @cached_property
    def saga_id(self) -> str:
        response = self.http.post(
            f"{self.node.http}/api/v1/streams/{self.stream.slug}/comment-and-react",
            json={"body": "the author's saga", "kind": "heart"},
            headers=self.headers("author"),
        )
        assert response.status_code == 202, response.text
        return response.json()["id"]


@dataclass(frozen=True)
class Row:
    method: str
    path: str  # as the schema spells it
    expected: dict[str, int]
    body: Callable[[World], Any] | None = None
    query: Callable[[World], dict[str, str]] | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def url(self, world: World) -> str:
        values = {"slug": world.stream.slug, "comment_id": world.comment.id, "kind": "heart"}
        if "{saga_id}" in self.path:
            values["saga_id"] = world.saga_id
        return world.node.http + self.path.format(**values)


def everyone(status: int) -> dict[str, int]:
    return dict.fromkeys(ROLES, status)


def users(status: int) -> dict[str, int]:
    """Any signed-in user; the service token is not a user of the public API."""
    return {"anonymous": 401, "other": status, "author": status, "staff": status, "service": 401}


def author_or_staff(status: int, *, other: int = 403) -> dict[str, int]:
    return {"anonymous": 401, "other": other, "author": status, "staff": status, "service": 401}


def service_only(status: int) -> dict[str, int]:
    """A user's token, staff's included, never reaches /internal/."""
    return {"anonymous": 401, "other": 401, "author": 401, "staff": 401, "service": status}


HTTP_ROWS = [
    Row(
        "POST",
        "/api/v1/auth/token",
        everyone(200),  # signing in needs the credentials in the body, whoever asks
        body=lambda w: {"username": w.author.username, "password": "pw-for-tests"},
    ),
    Row("GET", "/api/v1/comments/{comment_id}/", everyone(200)),
    Row(
        "PATCH",
        "/api/v1/comments/{comment_id}/",
        author_or_staff(200),
        body=lambda w: {"body": "edited"},
        headers={"If-Match": '"1"'},
    ),
    Row("DELETE", "/api/v1/comments/{comment_id}/", author_or_staff(204)),
    Row("GET", "/api/v1/comments/{comment_id}/reactions/", everyone(200)),
    Row("PUT", "/api/v1/comments/{comment_id}/reactions/{kind}/", users(201)),
    Row("DELETE", "/api/v1/comments/{comment_id}/reactions/{kind}/", users(204)),
    Row("GET", "/api/v1/realtime/connect", everyone(200), query=lambda w: {"stream": w.stream.slug}),
    # Someone else's saga does not exist for a user (404); staff sees every saga.
    Row("GET", "/api/v1/sagas/{saga_id}/", author_or_staff(200, other=404)),
    Row("POST", "/api/v1/sagas/{saga_id}/retry/", author_or_staff(409, other=404)),  # 409: nothing failed
    Row(
        "POST",
        "/api/v1/streams/{slug}/comment-and-react/",
        users(202),
        body=lambda w: {"body": "hello", "kind": "heart"},
    ),
    Row("GET", "/api/v1/streams/{slug}/comments/", everyone(200)),
    Row("POST", "/api/v1/streams/{slug}/comments/", users(202), body=lambda w: {"body": "hello"}),
    Row("POST", "/api/v1/streams/{slug}/reactions/", users(202), body=lambda w: {"kind": "heart"}),
    Row(
        "POST",
        "/internal/moderation/bulk-delete/",
        service_only(200),
        body=lambda w: {"comment_ids": [str(w.comment.id)]},
    ),
    Row("POST", "/internal/streams/", service_only(201), body=lambda w: {"slug": f"{w.stream.slug}-x", "title": "T"}),
    Row("POST", "/internal/streams/{slug}/close/", service_only(200)),
    Row("POST", "/internal/streams/{slug}/system-comments/", service_only(202), body=lambda w: {"body": "hello"}),
]


def test_every_operation_has_a_row(service_node: AsgiNode, http: httpx.Client) -> None:
    """A new endpoint must say who may call it: the schema's operations are exactly the table's rows."""
    schema = http.get(f"{service_node.http}/api/schema/", params={"format": "json"}).json()
    operations = {(method.upper(), path) for path, item in schema["paths"].items() for method in item}
    assert operations == {(row.method, row.path) for row in HTTP_ROWS}


def _sign_in_limits_reset() -> None:
    """Forget the per-address sign-in counts: every test of the run signs in from 127.0.0.1, and
    this table is about who may call, not about how often (tests/gateway covers that)."""
    caches["ratelimit"].clear()


@pytest.mark.parametrize("row", HTTP_ROWS, ids=lambda row: f"{row.method} {row.path}")
def test_http_answers_by_caller(
    row: Row, live: Any, service_node: AsgiNode, http: httpx.Client, callers: Callers
) -> None:
    """Each caller gets the row's status; the whole row is compared, so a diff shows every wrong cell."""
    answers = {}
    _sign_in_limits_reset()
    for role in ROLES:
        world = World(node=service_node, http=http, callers=callers)
        response = http.request(
            row.method,
            row.url(world),
            headers={**world.headers(role), **row.headers},
            params=row.query(world) if row.query else None,
            json=row.body(world) if row.body else None,
        )
        answers[role] = response.status_code
        if response.status_code >= 400:
            assert {"code", "detail"} <= set(response.json()), (role, response.text)
    assert answers == row.expected


# --- WebSocket -----------------------------------------------------------------------------------

# What a socket of each caller gets for each client frame: "ok" (no error frame before the pong
# that answers the ping sent right after it) or the code of the error frame; the socket stays open.
SIGNED_IN_ONLY = {
    "anonymous": "auth_required",
    "other": "ok",
    "author": "ok",
    "staff": "ok",
    "service": "auth_required",
}
FRAME_ROWS: dict[str, tuple[dict[str, Any], dict[str, str]]] = {
    "ping": ({"type": "ping"}, dict.fromkeys(ROLES, "ok")),
    "credit": ({"type": "credit", "n": 10}, dict.fromkeys(ROLES, "ok")),
    "resync": ({"type": "resync", "after": 0}, dict.fromkeys(ROLES, "ok")),
    "reaction": ({"type": "reaction", "kind": "heart"}, SIGNED_IN_ONLY),
    # Not a frame type: refused alike for everyone.
    "(unknown)": ({"type": "no-such-type"}, dict.fromkeys(ROLES, "bad_frame")),
}


def _socket_url(world: World, role: str) -> str:
    url = f"{world.node.ws}/ws/streams/{world.stream.slug}/"
    if role == "service":
        return f"{url}?token={SERVICE_TOKEN}"  # not a user's token: the socket is anonymous
    if role != "anonymous":
        return f"{url}?token={world.tokens[role]}"
    return url


def _answer_to(client: WsClient, frame: dict[str, Any]) -> str:
    start = len(client.frames)
    client.send(frame)
    client.send({"type": "ping"})
    replies = client.wait_for(
        lambda frames: (
            frames[start:] if any(f.get("type") == "pong" for f in frames[start:]) or client.close_code else None
        ),
        timeout=10,
        what=f"the answer to {frame}",
    )
    if client.close_code is not None:
        return f"close:{client.close_code}"
    errors = [f["code"] for f in replies if f.get("type") == "error"]
    return errors[0] if errors else "ok"


def test_every_frame_type_has_a_row() -> None:
    """A new inbound frame type must say who may send it."""
    assert set(FRAME_ROWS) - {"(unknown)"} == {"ping", "credit", "resync", *inbound_handlers}


@pytest.mark.parametrize("frame_type", list(FRAME_ROWS))
def test_frame_answers_by_caller(
    frame_type: str, live: Any, service_node: AsgiNode, http: httpx.Client, callers: Callers
) -> None:
    """Every caller's socket connects (hello); then each gets the row's answer to the frame."""
    frame, expected = FRAME_ROWS[frame_type]
    answers = {}
    _sign_in_limits_reset()
    for role in ROLES:
        world = World(node=service_node, http=http, callers=callers)
        client = WsClient(_socket_url(world, role))
        try:
            assert client.frames and client.frames[0]["type"] == "hello", (role, client.frames, client.close_code)
            answers[role] = _answer_to(client, frame)
        finally:
            client.close()
    assert answers == expected
