"""Hot-stream detection from the tap rate, and the hot_streams command (list and pins)."""

from io import StringIO

import pytest
from django.core.management import call_command
from pytest_django import Settings

from reactions.hot import HotStreams
from reactions.redis_counters import counter_state_read, counts_of
from reactions.services.taps import reaction_tap
from realtime.models import Stream
from realtime.node import node
from tests.factories import UserFactory
from tests.support.processes import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_stream_over_the_threshold_becomes_hot_and_is_listed(stream: Stream, settings: Settings) -> None:
    """Taps over the per-second threshold make the stream hot; the command lists it with its rate."""
    settings.CHORUS_HOT_STREAM_THRESHOLD = 10
    users = [UserFactory.create() for _ in range(3)]
    for i in range(30):
        reaction_tap(stream_id=stream.id, user_id=users[i % 3].pk, kind="heart")
    # The rate of a second is judged once it is over.
    wait_until(lambda: stream.id in node.part(HotStreams).refresh(), timeout=5)
    out = StringIO()
    call_command("hot_streams", stdout=out)
    assert stream.slug in out.getvalue() and "detected" in out.getvalue()

    # taps now spread over the shard keys, and reads merge them
    for i in range(30):
        assert reaction_tap(stream_id=stream.id, user_id=users[i % 3].pk, kind="fire").hot
    assert counts_of(counter_state_read(stream_id=stream.id)) == {"fire": 30, "heart": 30}


def test_pins_override_detection(stream: Stream) -> None:
    """An admin pins a stream hot (then cold, then back to automatic) with the command."""
    call_command("hot_streams", "--pin", stream.slug, "hot", stdout=StringIO())
    assert stream.id in node.part(HotStreams).refresh()
    out = StringIO()
    call_command("hot_streams", stdout=out)
    assert "pinned hot" in out.getvalue()
    call_command("hot_streams", "--pin", stream.slug, "cold", stdout=StringIO())
    assert stream.id not in node.part(HotStreams).refresh()
    call_command("hot_streams", "--pin", stream.slug, "auto", stdout=StringIO())
    out = StringIO()
    call_command("hot_streams", stdout=out)
    assert "no hot streams" in out.getvalue()
