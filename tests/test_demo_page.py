"""The live page (streams/<slug>/, on @chorus/client) in headless Chromium, against real nodes: two
browser contexts on two nodes, one writing and tapping, the other seeing it live."""

import contextlib
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, Route, expect, sync_playwright

from realtime.models import Stream
from tests.client.conftest import js_build  # noqa: F401  (the page loads the built package)
from tests.conftest import Stack
from tests.factories import UserFactory
from tests.support.processes import ROOT

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
HOSTILE = '<img src=x onerror="document.body.dataset.pwned=1"> hi & bye'
PHONE = {"width": 390, "height": 844}
ARTIFACTS = ROOT / "test-artifacts" / "screenshots"
# Screenshots are written to test-artifacts/ on every run, and into docs/ (committed, linked from
# the README) when CHORUS_UPDATE_SCREENSHOTS=1.
DOCS_SCREENSHOTS = ROOT / "docs" / "screenshots"


@contextlib.contextmanager
def chromium() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def open_page(browser: Browser, base: str, slug: str, *, login: str | None = None, **context: Any) -> Page:
    """The stream's page on a node, logged in as ``login`` (password pw-for-tests) or anonymous."""
    page = browser.new_context(**context).new_page()
    if login is None:
        page.goto(f"{base}/streams/{slug}/")
    else:
        page.goto(f"{base}/accounts/login/?next=/streams/{slug}/")
        page.fill("#id_username", login)
        page.fill("#id_password", "pw-for-tests")
        page.click("#login-submit")
        page.wait_for_url(f"**/streams/{slug}/")
    expect(page.locator("#status")).to_have_attribute("data-state", "live")
    return page


def wait_while_serving(page: Page, condition: Callable[[], object], *, timeout: float, what: str) -> None:
    """Poll a condition that Playwright's route callbacks change (they run while the page waits)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        page.wait_for_timeout(50)


def comment_item(page: Page, body: str):
    return page.locator("#comments li.comment").filter(has=page.locator(".body", has_text=body))


def test_two_viewers_see_comments_pending_posts_taps_reactions_edits_and_deletes(
    js_build: Path,  # noqa: F811
    live: Stack,
    stream: Stream,
) -> None:
    """Alice on node A writes, taps and edits; Bob on node B sees it all live, as text; each sees
    the other's reactions; controls work from the keyboard."""
    UserFactory.create(username="alice", password="pw-for-tests")
    UserFactory.create(username="bob", password="pw-for-tests")
    node_a, node_b = live.nodes
    with chromium() as browser:
        alice = open_page(browser, node_a.http, stream.slug, login="alice")
        bob = open_page(browser, node_b.http, stream.slug, login="bob")
        expect(alice.locator("#viewers")).to_have_text("2 watching", timeout=15_000)
        expect(bob.locator("#viewers")).to_have_text("2 watching", timeout=15_000)

        # given a post held on its way to the server
        held: list[Route] = []
        alice.route("**/api/v1/streams/*/comments", lambda route: held.append(route))
        # when Alice types it and presses Enter
        alice.focus("#body")
        alice.keyboard.type(HOSTILE)
        alice.keyboard.press("Enter")
        wait_while_serving(alice, lambda: held, timeout=10, what="the post to be sent")
        # then it shows as hers, not yet published, until the server took it and published it
        expect(alice.locator("#pending li .state")).to_have_text("sending…")
        expect(alice.locator("#pending li .body")).to_have_text(HOSTILE)
        held[0].continue_()
        alice.unroute("**/api/v1/streams/*/comments")
        for page in (alice, bob):
            item = comment_item(page, "hi & bye")
            expect(item.locator(".body")).to_have_text(HOSTILE)
            expect(item.locator(".author")).to_have_text("alice")
            expect(item.locator(".seq")).to_have_text("#1")
            assert page.locator("#comments img").count() == 0
            assert page.evaluate("document.body.dataset.pwned") is None
        expect(alice.locator("#pending li")).to_have_count(0)

        # taps: counts on both pages, and reactions floating up on the other one
        alice.click("#taps .tap[data-kind=heart]")
        expect(bob.locator("#taps .tap[data-kind=heart] .count")).to_have_text("1")
        alice.focus("#taps .tap[data-kind=heart]")
        alice.keyboard.press("Enter")
        alice.keyboard.press("Enter")
        alice.click("#taps .tap[data-kind=fire]")
        expect(bob.locator("#taps .tap[data-kind=heart] .count")).to_have_text("3")
        expect(bob.locator("#taps .tap[data-kind=fire] .count")).to_have_text("1")
        expect(alice.locator("#taps .tap[data-kind=heart] .count")).to_have_text("3")
        assert int(bob.locator("#floats").get_attribute("data-floated") or 0) >= 2
        assert int(alice.locator("#floats").get_attribute("data-floated") or 0) >= 4

        # Bob reacts on Alice's comment; both see the count
        comment_id = comment_item(alice, "hi & bye").get_attribute("data-id")
        bob_item, alice_item = (page.locator(f'#comments li[data-id="{comment_id}"]') for page in (bob, alice))
        bob_item.locator(".react[data-kind=clap]").click()
        expect(bob_item.locator(".react[data-kind=clap]")).to_have_attribute("aria-pressed", "true")
        expect(alice_item.locator(".react[data-kind=clap] .n")).to_have_text("1")
        expect(alice_item.locator(".react[data-kind=clap]")).to_have_attribute("aria-pressed", "false")

        # only the author can edit or delete; Alice edits from the keyboard
        assert bob_item.locator(".edit").count() == 0
        alice_item.locator(".edit").focus()
        alice.keyboard.press("Enter")
        editor = alice_item.locator(".edit-form input")
        expect(editor).to_be_focused()
        editor.fill("<b>rewritten</b>")
        alice.keyboard.press("Enter")
        edited = bob_item
        expect(edited.locator(".body")).to_have_text("<b>rewritten</b>")
        expect(edited.locator(".edited")).to_have_text("edited")
        assert bob.locator("#comments b").count() == 0
        expect(edited.locator(".react[data-kind=clap] .n")).to_have_text("1")

        # and deletes it (two steps)
        item = alice_item
        expect(item.locator(".body")).to_have_text("<b>rewritten</b>")
        item.locator(".delete").click()
        expect(item.locator(".delete")).to_have_text("Really delete?")
        item.locator(".delete").click()
        for page in (alice, bob):
            gone = page.locator("#comments li.comment.deleted")
            expect(gone.locator(".body")).to_have_text("comment deleted")
            assert gone.locator(".react").count() == 0


def test_a_post_made_offline_stays_pending_and_is_published_once_the_network_is_back(
    js_build: Path,  # noqa: F811
    live: Stack,
    stream: Stream,
) -> None:
    """The connection state shows offline; the post waits as pending; it is published once."""
    UserFactory.create(username="carol", password="pw-for-tests")
    node = live.nodes[0]
    with chromium() as browser:
        page = open_page(browser, node.http, stream.slug, login="carol")
        page.context.set_offline(True)
        expect(page.locator("#status")).to_have_attribute("data-state", "offline", timeout=40_000)
        page.fill("#body", "written offline")
        page.click("#send")
        expect(page.locator("#pending li .body")).to_have_text("written offline")
        page.context.set_offline(False)
        page.evaluate("window.dispatchEvent(new Event('online'))")
        expect(page.locator("#status")).to_have_attribute("data-state", "live", timeout=30_000)
        expect(comment_item(page, "written offline")).to_have_count(1, timeout=30_000)
        expect(page.locator("#pending li")).to_have_count(0)
    assert stream.comments.filter(body="written offline").count() == 1


def _screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path))
    if os.environ.get("CHORUS_UPDATE_SCREENSHOTS") == "1":
        DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS_SCREENSHOTS / name)


def test_on_a_phone_nothing_scrolls_sideways_and_screenshots_of_live_traffic(
    js_build: Path,  # noqa: F811
    live: Stack,
    stream: Stream,
) -> None:
    """A 390 px wide viewer of a stream with live traffic from another context: no horizontal
    scroll (long words, every control); screenshots at desktop and phone size."""
    UserFactory.create(username="dana", password="pw-for-tests")
    UserFactory.create(username="eve", password="pw-for-tests")
    node_a, node_b = live.nodes
    Stream.objects.filter(id=stream.id).update(title="Final: Lisbon v Porto")
    with chromium() as browser:
        writer = open_page(browser, node_a.http, stream.slug, login="dana")
        wide = open_page(browser, node_b.http, stream.slug, login="eve", viewport={"width": 1024, "height": 760})
        phone = open_page(
            browser, node_b.http, stream.slug, login="eve", viewport=PHONE, device_scale_factor=2, is_mobile=True
        )
        lines = [
            "Kick-off! Here we go 🎉",
            "That save in the 12th minute was unreal",
            "Anyone else watching from Lisbon?",
            "Supercalifragilisticexpialidocious" * 3,
            "What a pass. WHAT A PASS.",
        ]
        for line in lines:
            writer.fill("#body", line)
            writer.keyboard.press("Enter")
        for page in (wide, phone):
            expect(page.locator("#comments li.comment")).to_have_count(len(lines), timeout=20_000)
        comment_item(phone, "Lisbon").locator(".react[data-kind=heart]").click()
        comment_item(wide, "WHAT A PASS").locator(".react[data-kind=fire]").click()
        for kind, taps in (("heart", 6), ("clap", 3), ("fire", 2)):
            for _ in range(taps):
                writer.click(f"#taps .tap[data-kind={kind}]")
        held: list[Route] = []  # the wide page's own post, on its way: shown as pending
        wide.route("**/api/v1/streams/*/comments", lambda route: held.append(route))
        wide.fill("#body", "Same here, from Porto!")
        wide.keyboard.press("Enter")
        wait_while_serving(wide, lambda: held, timeout=10, what="the post to be sent")
        for page in (wide, phone):
            expect(page.locator("#taps .tap[data-kind=heart] .count")).to_have_text("6")
            expect(page.locator("#viewers")).to_have_text("3 watching", timeout=15_000)
            expect(comment_item(page, "Lisbon").locator(".react[data-kind=heart] .n")).to_have_text("1")

        # then the phone page fits its width, with every control reachable
        width = phone.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], f"the page is {width}px wide on a {PHONE['width']}px screen"
        assert phone.evaluate("document.documentElement.clientWidth") == PHONE["width"]
        for selector in ("#body", "#send", "#send-react", "#taps .tap[data-kind=wow]"):
            box = phone.locator(selector).bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], selector

        writer.click("#taps .tap[data-kind=heart]")  # hearts in flight when the pictures are taken
        writer.click("#taps .tap[data-kind=heart]")
        expect(wide.locator("#floats .float").first).to_be_attached()
        _screenshot(wide, "live-page.png")
        _screenshot(phone, "live-page-phone.png")
        held[0].continue_()
        expect(comment_item(phone, "Porto")).to_have_count(1)


def test_an_unknown_stream_is_a_404_and_a_reader_cannot_write(
    js_build: Path,  # noqa: F811
    live: Stack,
    stream: Stream,
    http: httpx.Client,
) -> None:
    """Anonymous readers see everything live but get no writing controls."""
    node = live.nodes[0]
    assert http.get(f"{node.http}/streams/no-such-stream/").status_code == 404
    with chromium() as browser:
        page = open_page(browser, node.http, stream.slug)
        expect(page.locator("#login-link")).to_be_visible()
        assert page.locator("#post-form").count() == 0
        expect(page.locator("#taps .tap[data-kind=heart]")).to_be_disabled()


def test_the_page_script_is_served_from_static_files(js_build: Path, live: Stack, http: httpx.Client) -> None:  # noqa: F811
    """The package comes from the node's static files (no CDN), as built by scripts/js.sh."""
    node = live.nodes[0]
    served = http.get(f"{node.http}/static/chorus-client/chorus-client.min.js")
    assert served.status_code == 200
    assert served.content == Path(js_build / "dist" / "chorus-client.min.js").read_bytes()
