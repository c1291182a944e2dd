"""The only code that publishes to the real-time tier.

An event is published as ``"<stream>|<seq>\\n<frame>"`` on its stream's Redis channel (the channel of
the stream's partition, ``realtime.pubsub_channels``): every node decodes the stream and sequence number
once and forwards the pre-encoded frame to its local subscribers untouched. With
``CHORUS_REDIS_CLUSTER=1`` it is a sharded publish (``SPUBLISH``): only the master owning the
channel's slot carries it, instead of every shard of the cluster.
The stream's epoch is read from the frame's fixed beginning (``{"type":"event","epoch":E,``), so
the message keeps the format of the release before epochs and a rolling upgrade mixes both
safely. A change of epoch (``stream_epoch_bump``) is announced as ``"<stream>|!<epoch>"``, so nodes
tell their sockets at once instead of at their next tail check.
A snapshot (latest-wins state such as reaction counts) is published as ``"~<kind>\\n<frame>"``, or
``"~<kind>@<version>\\n<frame>"`` when its publisher numbers its versions: publishers on several
nodes can cross in Redis, and each node then forwards only versions newer than the last it did.
Publishing is best effort by design: a lost publish is repaired by every node from the event log
(gap detection and the periodic tail check in ``realtime.hub``), never trusted to arrive.
"""

import logging
from collections.abc import Sequence
from typing import Any

import redis
import redis.asyncio as aioredis

from project.redis import redis_client as _redis
from project.redis import redis_cluster_enabled
from realtime.pubsub_channels import stream_channel

logger = logging.getLogger(__name__)


SNAPSHOT_MARK = b"~"
USER_MARK = b"@"
EPOCH_MARK = b"!"


# How every event frame begins (``realtime.protocol.event_frame``), up to its epoch.
_EPOCH_AT = b'{"type":"event","epoch":'


def encode_published(stream_id: int, seq: int, frame: str) -> bytes:
    return f"{stream_id}|{seq}\n{frame}".encode()


def encode_snapshot(stream_id: int, kind: str, frame: str, *, version: int | None = None) -> bytes:
    head = kind if version is None else f"{kind}@{version}"
    return f"{stream_id}|~{head}\n{frame}".encode()


def decode_stream_message(message: bytes) -> tuple[int, bytes]:
    """``(stream id, body)`` of a message on a partition channel; the body is decoded by the
    functions below (``decode_published``, ``decode_user_frame``)."""
    stream_id, _, body = message.partition(b"|")
    return int(stream_id), body


def _publish(client: Any, channel: str, message: bytes) -> Any:
    """PUBLISH on a single Redis, SPUBLISH (sharded, to the slot's master only) on a cluster."""
    if redis_cluster_enabled():
        return client.spublish(channel, message)
    return client.publish(channel, message)


def snapshot_kind_version(head: str) -> tuple[str, int | None]:
    """Split a decoded snapshot head (``kind`` or ``kind@version``)."""
    kind, _, version = head.partition("@")
    return kind, int(version) if version else None


def encode_user_frame(stream_id: int, user_id: int, kind: str, frame: str) -> bytes:
    return f"{stream_id}|@{user_id}:{kind}\n{frame}".encode()


def decode_user_frame(message: bytes) -> tuple[int, str, str]:
    head, _, frame = message.partition(b"\n")
    user_id, _, kind = head[1:].decode().partition(":")
    return int(user_id), kind, frame.decode()


def decode_published(message: bytes) -> tuple[int | str, str, int | None]:
    """``(seq, frame, epoch)`` for a sequenced event, ``(head, frame, None)`` for a snapshot
    (``snapshot_kind_version``). ``epoch`` is None for a frame without one (published by the
    release before epochs, during a rolling upgrade): it belongs to the epoch the reader knows."""
    head, _, frame = message.partition(b"\n")
    if head.startswith(SNAPSHOT_MARK):
        return head[1:].decode(), frame.decode(), None
    epoch = None
    if frame.startswith(_EPOCH_AT):
        epoch = int(frame[len(_EPOCH_AT) : frame.index(b",", len(_EPOCH_AT))])
    return int(head), frame.decode(), epoch


def decode_epoch_notice(body: bytes) -> int:
    """The epoch of an ``!<epoch>`` announcement (the body of a ``decode_stream_message``)."""
    return int(body[1:])


def event_broadcast(*, stream_id: int, seq: int, frame: str) -> None:
    """Publish an already-committed event to every node; never raises."""
    events_broadcast(stream_id=stream_id, frames=[(seq, frame)])


def events_broadcast(*, stream_id: int, frames: Sequence[tuple[int, str]]) -> None:
    """Publish already-committed events of one stream, in order, in one round trip; never raises.

    Each event stays its own message, so every node handles a batch exactly like single events.
    """
    if not frames:
        return
    channel = stream_channel(stream_id)
    try:
        with _redis().pipeline(transaction=False) as pipe:
            for seq, frame in frames:
                _publish(pipe, channel, encode_published(stream_id, seq, frame))
            pipe.execute()
    except redis.RedisError:
        logger.warning(
            "publish of stream %s #%s-#%s failed; nodes will repair from the event log",
            stream_id,
            frames[0][0],
            frames[-1][0],
        )


def epoch_broadcast(*, stream_id: int, epoch: int) -> None:
    """Tell every node that a stream entered ``epoch``; never raises (nodes' tail checks see it too)."""
    try:
        _publish(_redis(), stream_channel(stream_id), f"{stream_id}|".encode() + EPOCH_MARK + str(epoch).encode())
    except redis.RedisError:
        logger.warning("epoch %s of stream %s not announced; nodes will see it in the database", epoch, stream_id)


def snapshot_broadcast(*, stream_id: int, kind: str, frame: str, version: int | None = None) -> None:
    """Publish a coalescable snapshot frame (reaction counts, presence): unsequenced, latest wins.

    Snapshots are not in the event log; a client that misses one gets the next, or the current one
    on reconnect from the registered snapshot provider (``realtime.extensions``). Never raises.
    """
    try:
        _publish(_redis(), stream_channel(stream_id), encode_snapshot(stream_id, kind, frame, version=version))
    except redis.RedisError:
        logger.warning("snapshot %s of stream %s not published", kind, stream_id)


async def snapshot_broadcast_async(
    *, client: aioredis.Redis, stream_id: int, kind: str, frame: str, version: int | None = None
) -> None:
    """``snapshot_broadcast`` from the event loop on the caller's asyncio client (same URL), no thread hop."""
    try:
        await _publish(client, stream_channel(stream_id), encode_snapshot(stream_id, kind, frame, version=version))
    except redis.RedisError:
        logger.warning("snapshot %s of stream %s not published", kind, stream_id)


def user_frame_broadcast(*, stream_id: int, user_id: int, kind: str, frame: str) -> None:
    """Send a frame to one user's sockets on a stream (e.g. the report of their saga); latest wins per kind.

    Travels on the stream's channel, so only nodes serving the stream see it; each node hands it
    to the sockets of that user only. Not in the event log: a missed one is superseded by the
    next, and the REST resource it describes stays the source of truth. Never raises.
    """
    try:
        _publish(_redis(), stream_channel(stream_id), encode_user_frame(stream_id, user_id, kind, frame))
    except redis.RedisError:
        logger.warning("frame %s for user %s not published", kind, user_id)
