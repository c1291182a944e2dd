"""Counters of this node's real-time tier, and ``/metrics`` in the Prometheus text format.

The hot path only increments plain integers on ``node_stats`` (no lock, no label lookup: a
delivery costs tens of microseconds and a Prometheus counter per frame would be a visible share
of it). A custom collector turns them into metrics at scrape time, next to cluster-wide figures
read from Redis (connections per node) and PostgreSQL (publish latency) and the Celery queue depth.
"""

import logging
from dataclasses import dataclass

from django.db import DatabaseError, connection
from django.http import HttpRequest, HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from project.queues import task_queue_depth

logger = logging.getLogger(__name__)


@dataclass
class NodeStats:
    connections: int = 0  # open stream sockets on this node
    frames_sent: int = 0  # event and snapshot frames written to sockets
    frames_direct: int = 0  # of those, event frames the hub wrote itself to idle sockets
    events_coalesced: int = 0  # snapshot frames replaced by a newer one before they were sent
    log_fallbacks: int = 0  # times a socket's buffer overflowed and it switched to the event log
    slow_disconnects: int = 0  # sockets closed as too far behind (4408)
    rate_limited_frames: int = 0  # inbound frames refused by the per-connection rate limit
    rate_limit_disconnects: int = 0  # sockets closed for inbound abuse (4429)
    stalled_sockets: int = 0  # sockets currently held because their write buffer is over the limit


node_stats = NodeStats()


def _publish_latency() -> tuple[float, float, int] | None:
    """p50 and p99 seconds from accepting a comment to publishing it, over the last minute."""
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM published_at - created_at)),"
                " percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM published_at - created_at)),"
                " count(*) FROM comments_comment WHERE published_at > now() - interval '60 seconds'"
            )
            p50, p99, count = cursor.fetchone()
    except DatabaseError as exc:
        logger.warning("publish latency unavailable: %s", exc)
        return None
    return (float(p50 or 0), float(p99 or 0), int(count))


def _pending_work():  # type: ignore[no-untyped-def]
    """Work accepted and not yet done: what an alert on a stuck pipeline watches."""
    from comments.selectors import comments_pending_oldest_age
    from delivery.selectors import outbox_open_oldest_age

    try:
        lag, outbox = comments_pending_oldest_age(), outbox_open_oldest_age()
    except DatabaseError as exc:
        logger.warning("pending work unavailable: %s", exc)
        return
    yield GaugeMetricFamily(
        "chorus_comments_pending_oldest_age_seconds",
        "Seconds the oldest comment accepted and not yet published has waited (the publish lag).",
        value=lag,
    )
    yield GaugeMetricFamily(
        "chorus_outbox_open_oldest_age_seconds",
        "Seconds the oldest outbox message whose task has not finished has waited.",
        value=outbox,
    )


class ChorusCollector:
    def collect(self):  # type: ignore[no-untyped-def]
        from realtime.hub import get_hub
        from realtime.nodes import node_list

        s = node_stats
        yield GaugeMetricFamily("chorus_ws_connections", "Open stream WebSockets on this node.", value=s.connections)
        hub = get_hub().stats()
        yield GaugeMetricFamily("chorus_hub_streams", "Streams this node's hub is subscribed to.", value=hub["streams"])
        yield GaugeMetricFamily("chorus_hub_subscribers", "Sockets registered with the hub.", hub["subscribers"])
        yield GaugeMetricFamily("chorus_ws_stalled", "Sockets held over their write-buffer limit.", s.stalled_sockets)
        for name, doc, value in [
            ("chorus_ws_frames_sent", "Event and snapshot frames written to sockets.", s.frames_sent),
            (
                "chorus_ws_frames_direct",
                "Event frames the hub wrote itself to idle sockets; the rest went through each socket's sender.",
                s.frames_direct,
            ),
            ("chorus_ws_events_coalesced", "Snapshots replaced by a newer one unsent.", s.events_coalesced),
            ("chorus_ws_log_fallbacks", "Socket buffer overflows answered from the event log.", s.log_fallbacks),
            ("chorus_ws_slow_disconnects", "Sockets closed as too far behind (4408).", s.slow_disconnects),
            ("chorus_ws_rate_limited_frames", "Inbound frames refused by the rate limit.", s.rate_limited_frames),
            ("chorus_ws_rate_limit_disconnects", "Sockets closed for inbound abuse (4429).", s.rate_limit_disconnects),
        ]:
            yield CounterMetricFamily(name, doc, value=value)
        per_node = GaugeMetricFamily(
            "chorus_node_connections", "Live connections per node, from the node registry.", labels=["node"]
        )
        for node in node_list():
            per_node.add_metric([node.node_id], node.connections)
        yield per_node
        depth = task_queue_depth()
        if depth is not None:
            yield GaugeMetricFamily("chorus_celery_queue_depth", "Tasks waiting in the task queues.", value=depth)
        yield from _pending_work()
        latency = _publish_latency()
        if latency is not None:
            p50, p99, count = latency
            family = GaugeMetricFamily(
                "chorus_comment_publish_latency_seconds",
                "Seconds from accepting a comment to publishing it (Celery task latency), last minute.",
                labels=["quantile"],
            )
            family.add_metric(["0.5"], p50)
            family.add_metric(["0.99"], p99)
            yield family
            yield GaugeMetricFamily("chorus_comments_published_last_minute", "Comments published, last minute.", count)


_registry = CollectorRegistry(auto_describe=False)
_registry.register(ChorusCollector())


def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus scrape endpoint of this node (no authentication: expose it on an internal port)."""
    return HttpResponse(generate_latest(_registry), content_type=CONTENT_TYPE_LATEST)
