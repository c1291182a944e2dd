"""The /internal/ API: service token only, its own bucket, the normal comment path."""

from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client, override_settings

from comments.models import Comment
from gateway.services import SYSTEM_USERNAME
from realtime.models import Stream
from tests.conftest import ApiUser, Stack
from tests.support.api import wait_published

TOKEN = "internal-token-for-tests"
SERVICE: dict[str, Any] = {"HTTP_AUTHORIZATION": f"Service {TOKEN}"}  # extra WSGI environ for the test client


@pytest.fixture
def internal_token() -> Iterator[str]:
    with override_settings(CHORUS_INTERNAL_API_TOKEN=TOKEN):
        yield TOKEN


def test_service_opens_a_stream_and_posts_a_system_comment_that_gets_published(
    live: Stack, internal_token: str
) -> None:
    """A system comment goes through acceptance and the publish task like any other."""
    client = Client()
    opened = client.post("/internal/streams", {"slug": "launch", "title": "Launch"}, "application/json", **SERVICE)
    assert opened.status_code == 201
    assert opened.json() == {"slug": "launch", "title": "Launch", "head": 0, "closed": False}
    assert opened["RateLimit-Limit"] == "500"  # the internal tier's own bucket

    posted = client.post(
        "/internal/streams/launch/system-comments", {"body": "Welcome!"}, "application/json", **SERVICE
    )
    assert posted.status_code == 202, posted.content
    wait_published([posted.json()["id"]])
    comment = Comment.objects.select_related("author").get(id=posted.json()["id"])
    assert (comment.author.username, comment.seq) == (SYSTEM_USERNAME, 1)
    assert not comment.author.has_usable_password()


def test_users_session_or_api_token_never_reach_the_internal_api(api_user: ApiUser, internal_token: str) -> None:
    """A signed-in user (cookie or token), a wrong token and no token all get 401 with the JSON shape."""
    body = {"slug": "x", "title": "X"}
    by_token = Client().post(
        "/internal/streams", body, "application/json", HTTP_AUTHORIZATION=f"Token {api_user.token}"
    )
    session = Client()
    session.force_login(api_user.user)
    by_session = session.post("/internal/streams", body, "application/json")
    wrong = Client().post("/internal/streams", body, "application/json", HTTP_AUTHORIZATION="Service nope")
    anonymous = Client().post("/internal/streams", body, "application/json")
    for response in (by_token, by_session, wrong, anonymous):
        assert response.status_code == 401, response.content
        assert set(response.json()) == {"code", "detail"}


def test_the_service_token_is_not_a_credential_on_the_public_api(stream: Stream, internal_token: str) -> None:
    """The other way round: the service token does not sign anyone in on /api/."""
    response = Client().post(f"/api/v1/streams/{stream.slug}/comments", {"body": "hi"}, "application/json", **SERVICE)
    assert response.status_code == 401


@pytest.mark.django_db(transaction=True)
def test_unset_internal_token_refuses_everything() -> None:
    """With no token configured, not even an empty ``Service`` credential gets in."""
    with override_settings(CHORUS_INTERNAL_API_TOKEN=""):
        response = Client().post("/internal/streams", {}, "application/json", HTTP_AUTHORIZATION="Service ")
    assert response.status_code == 401


def test_bad_input_names_the_field_and_unknown_paths_are_json(internal_token: str, transactional_db: None) -> None:
    """Validation errors name the field; an unknown internal path is a JSON 404."""
    bad = Client().post("/internal/streams", {"slug": "no spaces allowed"}, "application/json", **SERVICE)
    assert bad.status_code == 400
    assert set(bad.json()["fields"]) == {"slug", "title"}
    missing = Client().post("/internal/streams/nope/system-comments", {"body": "x"}, "application/json", **SERVICE)
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    assert Client().get("/internal/nothing-here", **SERVICE).json()["code"] == "not_found"
