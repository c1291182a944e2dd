""" "Comment and react" on the live page: the saga's outcome shown step by step, and a retry of
what failed, in Chromium against a node and a worker that fail on purpose."""

from pathlib import Path

import pytest
from playwright.sync_api import expect

from realtime.models import Stream
from tests.client.conftest import js_build  # noqa: F401  (the page loads the built package)
from tests.delivery.conftest import FaultStack
from tests.factories import UserFactory
from tests.test_demo_page import chromium, open_page

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]


def test_a_failed_reaction_is_shown_undone_and_retried_from_the_page(
    js_build: Path,  # noqa: F811
    saga_stack: FaultStack,
    stream: Stream,
) -> None:
    """The reaction fails for good: the card says the comment was posted and undone and the
    reaction failed; once the fault is gone, Retry (from the keyboard) runs it again to success."""
    UserFactory.create(username="frank", password="pw-for-tests")
    with chromium() as browser:
        page = open_page(browser, saga_stack.node.http, stream.slug, login="frank")
        page.fill("#body", "fail-react <i>now</i>")
        page.select_option("#react-kind", "fire")
        page.click("#send-react")

        card = page.locator("#sagas .saga")
        expect(card).to_have_attribute("data-state", "compensated", timeout=60_000)
        expect(card.locator("h2")).to_have_text("🔥 “fail-react <i>now</i>”")
        expect(card.locator("li[data-step=comment]")).to_have_attribute("data-state", "compensated")
        expect(card.locator("li[data-step=comment]")).to_have_text("↺ post the comment: undone")
        expect(card.locator("li[data-step=react]")).to_contain_text("failed, undone")
        expect(card.locator(".summary")).to_contain_text("you can retry")
        # the comment it posted was published, then deleted by the compensation
        expect(page.locator("#comments li.comment.deleted")).to_have_count(1)
        assert page.locator("#sagas i, #comments i").count() == 0

        saga_stack.restart_worker(CHORUS_FAULT_INJECT="")  # the fault is fixed
        try:
            card.locator(".retry").focus()
            page.keyboard.press("Enter")
            expect(card).to_have_attribute("data-state", "succeeded", timeout=60_000)
            expect(card.locator("li.ok")).to_have_count(2)
            assert card.locator(".retry").count() == 0
            published = page.locator("#comments li.comment:not(.deleted)")
            expect(published.locator(".body")).to_have_text("fail-react <i>now</i>")
            expect(published.locator(".react[data-kind=fire]")).to_have_attribute("aria-pressed", "true")
            expect(published.locator(".react[data-kind=fire] .n")).to_have_text("1")
        finally:
            saga_stack.restart_worker()
