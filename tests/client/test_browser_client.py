"""The built client (dist/chorus-client.min.js) in headless Chromium, in pages served by real nodes:
session-cookie auth with CSRF, discovery, joining at the tail, posting, and the outbox in
localStorage surviving a reload."""

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from comments.models import Comment
from realtime.models import Stream
from tests.client.conftest import BUNDLE
from tests.conftest import Stack
from tests.factories import UserFactory
from tests.test_demo_page import CHROMIUM, CHROMIUM_ARGS

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]

# Runs in the page: a client on the page's own origin (no token: the session cookie), following
# one stream and recording what it hands over.
SUBSCRIBE = """(slug) => {
  window.log = { comments: [], states: [], errors: [], posted: [] };
  window.client = new Chorus.ChorusClient({ backoff: { min: 100, max: 1000 } });
  client.on("posted", (entry, accepted) => log.posted.push([entry.key, accepted.id]));
  window.sub = client.subscribe(slug, { tail: 10 });
  sub.on("comment", (c, meta) => log.comments.push([c.body, c.author, meta.seq, meta.tail]));
  sub.on("state", (s) => log.states.push(s));
  sub.on("error", (e) => log.errors.push(String(e)));
}"""


def _wait_while_serving(page: Page, condition: Callable[[], object], *, timeout: float, what: str) -> None:
    """Poll a condition that Playwright's callbacks (routes) change: they run only while the sync
    API is waiting on the page, so the poll waits there."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        page.wait_for_timeout(50)


@contextlib.contextmanager
def chromium() -> Iterator[Browser]:
    """Chromium for one test; Playwright's loop runs in this thread, so the ORM is used outside."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def _page_with_client(page: Page, base: str, slug: str, *, login: str | None = None) -> Page:
    """Open a page of the node (its login page, or where logging in leads), load the package."""
    page.goto(f"{base}/accounts/login/?next=/accounts/login/")
    if login is not None:
        page.fill("#id_username", login)
        page.fill("#id_password", "pw-for-tests")
        page.click("#login-submit")
        page.wait_for_load_state()
    page.add_script_tag(path=str(BUNDLE))
    page.evaluate(SUBSCRIBE, slug)
    page.wait_for_function("window.sub.state === 'live'")
    return page


def test_subscribe_and_post_from_a_page_with_the_session_cookie(js_build: Path, live: Stack, stream: Stream) -> None:
    """A logged-in page posts through the package; a reader's page on the other node gets the
    comment live, as text, with the author and sequence number; a page opened later gets it from
    the tail read."""
    UserFactory.create(username="alice", password="pw-for-tests")
    node_a, node_b = live.nodes
    hostile = '<img src=x onerror="document.body.dataset.pwned=1"> hi & bye'
    with chromium() as browser:
        writer = _page_with_client(browser.new_context().new_page(), node_a.http, stream.slug, login="alice")
        reader = _page_with_client(browser.new_context().new_page(), node_b.http, stream.slug)

        accepted = writer.evaluate("(args) => client.postComment(...args)", [stream.slug, hostile])
        assert accepted["status"] == "pending"

        for page in (writer, reader):
            page.wait_for_function("log.comments.length === 1")
            assert page.evaluate("log.comments") == [[hostile, "alice", 1, False]]
            assert page.evaluate("log.errors") == []
            assert page.evaluate("sub.position") == {"epoch": 1, "seq": 1}
            assert page.evaluate("document.body.dataset.pwned") is None
        assert reader.evaluate("log.states") == ["live"]

        late = _page_with_client(browser.new_context().new_page(), node_b.http, stream.slug)
        assert late.evaluate("log.comments") == [[hostile, "alice", 1, True]]


def test_a_post_made_offline_survives_a_reload_and_is_published_once(
    js_build: Path, live: Stack, stream: Stream
) -> None:
    """Posting fails at the network; the post waits in localStorage, the page reloads, and the
    reloaded page's client sends it (same Idempotency-Key) once the network is back."""
    UserFactory.create(username="bob", password="pw-for-tests")
    node = live.nodes[0]
    outbox_key = f"chorus.outbox:{node.http}"
    refused: list[str] = []

    def network_down(route) -> None:
        if route.request.method == "POST":
            refused.append(route.request.headers.get("idempotency-key", ""))
            route.abort()
        else:
            route.continue_()

    with chromium() as browser:
        page = _page_with_client(browser.new_context().new_page(), node.http, stream.slug, login="bob")
        page.route("**/api/v1/streams/*/comments", network_down)
        page.evaluate("(slug) => { client.postComment(slug, 'written offline').catch(() => {}); }", stream.slug)
        page.wait_for_function("client.pending().length === 1")
        _wait_while_serving(page, lambda: len(refused) >= 2, timeout=15, what="two refused attempts")
        stored = page.evaluate("(key) => JSON.parse(localStorage.getItem(key))", outbox_key)
        assert [entry["payload"]["body"] for entry in stored] == ["written offline"]

        page.reload()  # the network is still down
        page.add_script_tag(path=str(BUNDLE))
        page.evaluate(SUBSCRIBE, stream.slug)
        assert page.evaluate("client.pending().map((e) => e.payload.body)") == ["written offline"]
        page.unroute("**/api/v1/streams/*/comments")
        page.evaluate("window.dispatchEvent(new Event('online'))")  # what the browser says when it is back

        page.wait_for_function("log.posted.length === 1 && log.comments.length === 1", timeout=30000)
        key, comment_id = page.evaluate("log.posted[0]")
        assert page.evaluate("log.comments[0].slice(0, 2)") == ["written offline", "bob"]
        assert page.evaluate("(key) => localStorage.getItem(key)", outbox_key) is None
    assert set(refused) == {key}, "every attempt carried the same Idempotency-Key"
    published = httpx.get(f"{node.http}/api/v1/streams/{stream.slug}/comments?after=0").json()["results"]
    assert [(c["id"], c["body"]) for c in published] == [(comment_id, "written offline")]
    assert Comment.objects.filter(stream=stream).count() == 1
