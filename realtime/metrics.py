"""The real-time tier's Prometheus metrics: this node's counters, its hub, the node registry.

``gateway/metrics.py`` serves them on ``/metrics`` next to the other apps' figures.
"""

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from realtime.node import node
from realtime.nodes import node_list


def realtime_metric_families() -> Iterator[Metric]:
    """This node's sockets, frames and hub, and live connections per node (one Redis read)."""
    s = node.stats
    yield GaugeMetricFamily("chorus_ws_connections", "Open stream WebSockets on this node.", value=s.connections)
    hub = node.hub.stats()
    yield GaugeMetricFamily("chorus_hub_streams", "Streams this node's hub is subscribed to.", value=hub["streams"])
    yield GaugeMetricFamily("chorus_hub_subscribers", "Sockets registered with the hub.", hub["subscribers"])
    yield GaugeMetricFamily("chorus_ws_stalled", "Sockets held over their write-buffer limit.", s.stalled_sockets)
    yield GaugeMetricFamily("chorus_node_draining", "1 while this node drains.", int(node.drain.draining))
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
        ("chorus_ws_history_resets", "Reset frames sent (a stream's epoch changed).", s.history_resets),
        ("chorus_ws_rate_limited_frames", "Inbound frames refused by the rate limit.", s.rate_limited_frames),
        ("chorus_ws_rate_limit_disconnects", "Sockets closed for inbound abuse (4429).", s.rate_limit_disconnects),
        ("chorus_ws_drained", "Sockets told to reconnect elsewhere while draining (4503).", s.drained_sockets),
    ]:
        yield CounterMetricFamily(name, doc, value=value)
    per_node = GaugeMetricFamily(
        "chorus_node_connections", "Live connections per node, from the node registry.", labels=["node"]
    )
    for info in node_list():
        per_node.add_metric([info.node_id], info.connections)
    yield per_node
