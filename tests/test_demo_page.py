"""The demo page in headless Chromium: a comment posted on one node appears on a page of the other."""

import pytest
from playwright.sync_api import expect, sync_playwright

from tests.factories import UserFactory

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


def test_comment_posted_in_one_page_appears_in_a_page_on_the_other_node(live, stream):
    """Log in and post on node A; a reader on node B sees it live, escaped, with its sequence number."""
    UserFactory(username="alice", password="pw-for-tests")
    node_a, node_b = live.nodes
    hostile = '<img src=x onerror="document.body.dataset.pwned=1"> hi & bye'

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        writer = browser.new_context().new_page()
        reader = browser.new_context().new_page()

        writer.goto(f"{node_a.http}/accounts/login/?next=/streams/{stream.slug}/")
        writer.fill("#id_username", "alice")
        writer.fill("#id_password", "pw-for-tests")
        writer.click("#login-submit")
        writer.wait_for_url(f"**/streams/{stream.slug}/")
        reader.goto(f"{node_b.http}/streams/{stream.slug}/")
        expect(writer.locator("#status")).to_have_attribute("data-state", "live")
        expect(reader.locator("#status")).to_have_attribute("data-state", "live")
        expect(reader.locator("#login-link")).to_be_visible()

        writer.fill("#body", hostile)
        writer.click("#send")

        item = reader.locator("#comments li").first
        expect(item.locator(".body")).to_have_text(hostile)
        expect(item.locator(".author")).to_have_text("alice")
        expect(item.locator(".seq")).to_have_text("#1")
        expect(writer.locator("#comments li .body")).to_have_text(hostile)
        assert reader.locator("#comments img").count() == 0
        assert reader.evaluate("document.body.dataset.pwned") is None
        browser.close()
