"""Counters of this node's real-time tier: plain integers the hot path increments.

No lock and no label lookup (a delivery costs tens of microseconds and a Prometheus counter per
frame would be a visible share of it); and no imports, so any module of the tier can count. The
node (``realtime.node``) holds the one instance and hands it to what counts;
``realtime/metrics.py`` turns it into metrics at scrape time.
"""

from dataclasses import dataclass


@dataclass
class NodeStats:
    connections: int = 0  # open stream sockets on this node
    frames_sent: int = 0  # event and snapshot frames written to sockets
    frames_direct: int = 0  # of those, event frames the hub wrote itself to idle sockets
    events_coalesced: int = 0  # snapshot frames replaced by a newer one before they were sent
    log_fallbacks: int = 0  # times a socket's buffer overflowed and it switched to the event log
    slow_disconnects: int = 0  # sockets closed as too far behind (4408)
    history_resets: int = 0  # reset frames sent: a stream entered a new epoch, or a client resumed in an old one
    rate_limited_frames: int = 0  # inbound frames refused by the per-connection rate limit
    rate_limit_disconnects: int = 0  # sockets closed for inbound abuse (4429)
    stalled_sockets: int = 0  # sockets currently held because their write buffer is over the limit
    drained_sockets: int = 0  # sockets handed over to other nodes while draining (4503)
