"""Writing events straight to the event log, exactly as the services do, for delivery tests."""

import uuid

from django.db import transaction

from realtime.events import snapshot_broadcast
from realtime.services import stream_event_append


def append_events(stream_id: int, n: int, *, size: int = 0, batch: int = 200) -> None:
    """Append ``n`` test events (each with ``size`` bytes of filler) and publish them after commit."""
    filler = "x" * size
    for start in range(0, n, batch):
        with transaction.atomic():
            for _ in range(min(batch, n - start)):
                stream_event_append(
                    stream_id=stream_id, event_type="test.event", event_id=uuid.uuid4(), payload={"filler": filler}
                )


def publish_snapshot(stream_id: int, kind: str, value: int) -> None:
    snapshot_broadcast(stream_id=stream_id, kind=kind, frame=f'{{"type":"snapshot","kind":"{kind}","value":{value}}}')
