"""Presence (viewers per stream over all nodes) and the Prometheus /metrics endpoint."""

import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from realtime.models import Stream
from tests.conftest import ApiUser, Stack
from tests.support.api import post_comment, wait_published
from tests.support.processes import AsgiNode
from tests.support.ws import WsClient

pytestmark = pytest.mark.django_db(transaction=True)


def _viewers(client: WsClient) -> int | None:
    counts = [f["viewers"] for f in client.frames if f["type"] == "presence"]
    return counts[-1] if counts else None


def test_presence_counts_viewers_on_every_node_at_most_once_a_heartbeat(
    node_pair: list[AsgiNode], stream: Stream
) -> None:
    """Viewers on two nodes are summed and pushed to both; a departure is seen; no more than one frame a beat."""
    node_a, node_b = node_pair
    first = WsClient(f"{node_a.ws}/ws/streams/{stream.slug}/")
    second = WsClient(f"{node_b.ws}/ws/streams/{stream.slug}/")
    third = WsClient(f"{node_b.ws}/ws/streams/{stream.slug}/")
    started = time.monotonic()
    for client in (first, second, third):
        client.wait_for(lambda _f, c=client: _viewers(c) == 3, timeout=15, what="3 viewers")
    third.close()
    first.wait_for(lambda _f: _viewers(first) == 2, timeout=15, what="2 viewers")
    elapsed = time.monotonic() - started
    presence = [f for f in first.frames if f["type"] == "presence"]
    assert len(presence) <= 2 + elapsed / 0.5  # one on connect, then at most one per 0.5 s heartbeat
    first.close()
    second.close()


def test_metrics_endpoint_speaks_prometheus_with_the_autoscaler_figures(
    live: Stack, api_user: ApiUser, stream: Stream, http: httpx.Client
) -> None:
    """/metrics parses as Prometheus text and has connections, frames, coalescing, slow clients, Celery."""
    node = live.nodes[0]
    client = WsClient(f"{node.ws}/ws/streams/{stream.slug}/")
    response = post_comment(http, node.http, stream.slug, api_user.headers, "measured")
    wait_published([response.json()["id"]])
    client.wait_for_seq(1)

    scrape = http.get(f"{node.http}/metrics")
    assert scrape.status_code == 200 and scrape.headers["content-type"].startswith("text/plain")
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(scrape.text)
        for sample in family.samples
    }
    names = {name for name, _labels in samples}
    assert {
        "chorus_ws_connections",
        "chorus_ws_frames_sent_total",
        "chorus_ws_events_coalesced_total",
        "chorus_ws_slow_disconnects_total",
        "chorus_celery_queue_depth",
        "chorus_comment_publish_latency_seconds",
    } <= names
    assert samples[("chorus_ws_connections", ())] >= 1
    assert samples[("chorus_ws_frames_sent_total", ())] >= 1
    assert samples[("chorus_comment_publish_latency_seconds", (("quantile", "0.99"),))] > 0
    assert ("chorus_node_connections", (("node", "node-a"),)) in samples
    client.close()
