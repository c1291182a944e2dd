"""Tell a saga's user what happened, over their stream sockets (the REST report is the record)."""

import json
import uuid

from realtime.events import user_frame_broadcast
from sagas.models import SagaRun
from sagas.selectors import saga_report


def saga_frame(*, run: SagaRun) -> str:
    return json.dumps({"type": "saga", "saga": saga_report(run=run)}, separators=(",", ":"))


def saga_notify(*, run_id: uuid.UUID) -> None:
    """Send the current report to the user's sockets on the saga's stream; latest wins per saga."""
    run = SagaRun.objects.filter(id=run_id).first()
    if run is None or run.stream_id is None:
        return
    user_frame_broadcast(stream_id=run.stream_id, user_id=run.user_id, kind=f"saga:{run.id}", frame=saga_frame(run=run))
