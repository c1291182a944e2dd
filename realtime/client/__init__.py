"""The Python client of Chorus, with the guarantees of ``@chorus/client`` (docs/CLIENT.md).

A subscription joins a stream at its tail (or resumes ``after`` a position), reconnects through
discovery with full-jitter backoff, resumes from the last event it applied, drops duplicates,
fills holes with ``resync``, reports what it cannot fill as a gap, paces the server with credit,
and keeps a watchdog on a silent socket. Posts go through an outbox under one Idempotency-Key until
the server takes them. The test suite uses it (tests/realtime/test_failover.py, test_client.py).

    async with ChorusClient("http://127.0.0.1:8000", token=token) as client:
        sub = client.subscribe("demo")
        sub.on("comment", lambda comment, meta: print(meta["seq"], comment["body"]))
        await client.post_comment("demo", "hello")
        await sub.wait_closed()
"""

from realtime.client.core import ChorusClient
from realtime.client.errors import ChorusError, Gap, StreamGap
from realtime.client.outbox import Outbox
from realtime.client.subscription import Subscription

__all__ = ["ChorusClient", "ChorusError", "Gap", "Outbox", "StreamGap", "Subscription"]
