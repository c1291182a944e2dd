"""``/metrics`` in the Prometheus text format: each app's figures, gathered at scrape time.

The real-time tier's counters and registry (``realtime/metrics.py``), the Celery queue depth
(``project/queues.py``), and the work accepted and not yet done, read through each app's selectors
(comments, delivery). A figure whose store is down is left out of the scrape, never a 500.
"""

import logging
from collections.abc import Iterator

from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

from comments.selectors import comments_pending_oldest_age, comments_publish_latency
from delivery.selectors import outbox_open_oldest_age
from project.queues import task_queue_depth
from realtime.metrics import realtime_metric_families

logger = logging.getLogger(__name__)


def _pending_work() -> Iterator[Metric]:
    """Work accepted and not yet done: what an alert on a stuck pipeline watches."""
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


def _publish_latency() -> Iterator[Metric]:
    try:
        latency = comments_publish_latency()
    except DatabaseError as exc:
        logger.warning("publish latency unavailable: %s", exc)
        return
    family = GaugeMetricFamily(
        "chorus_comment_publish_latency_seconds",
        "Seconds from accepting a comment to publishing it (Celery task latency), last minute.",
        labels=["quantile"],
    )
    family.add_metric(["0.5"], latency.p50)
    family.add_metric(["0.99"], latency.p99)
    yield family
    yield GaugeMetricFamily("chorus_comments_published_last_minute", "Comments published, last minute.", latency.count)


class ChorusCollector:
    def collect(self) -> Iterator[Metric]:
        yield from realtime_metric_families()
        depth = task_queue_depth()
        if depth is not None:
            yield GaugeMetricFamily("chorus_celery_queue_depth", "Tasks waiting in the task queues.", value=depth)
        yield from _pending_work()
        yield from _publish_latency()


_registry = CollectorRegistry(auto_describe=False)
_registry.register(ChorusCollector())


def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus scrape endpoint of this node (no authentication: expose it on an internal port)."""
    return HttpResponse(generate_latest(_registry), content_type=CONTENT_TYPE_LATEST)
