"""The reaction-count snapshot frame sent on stream sockets.

``{"type": "reactions", "counts": {"heart": 12, ...}, "version": V}``: unsequenced, latest wins.
``version`` grows with every frame of a stream, across Redis restarts too (``reactions.redis_counters``:
``VERSION_NEXT_SCRIPT``), so a client keeps the frame with the highest version it has seen and
ignores an older one that arrives late.
"""

import json

SNAPSHOT_KIND = "reactions"


def counts_frame(*, counts: dict[str, int], version: int) -> str:
    return json.dumps({"type": "reactions", "counts": counts, "version": version}, separators=(",", ":"))
