"""Names of the Redis pub/sub channels the real-time tier uses (one obvious place for them).

Streams share a fixed number of channels: stream ``id`` travels on the channel of its partition
(``project.redis.stream_partition``), and every message names its stream (``realtime.events``). A
node therefore holds at most ``CHORUS_PUBSUB_PARTITIONS`` subscriptions, however many streams it
serves, and in a Redis Cluster each channel carries its partition's hash tag, so sharded pub/sub
spreads the partitions evenly over the masters.
"""

from django.conf import settings

from project.redis import partition_tag, stream_partition


def partition_channel(partition: int) -> str:
    return f"{settings.CHORUS_REDIS_PREFIX}:ps:{partition_tag(partition)}"


def stream_channel(stream_id: int) -> str:
    """The pub/sub channel carrying a stream's encoded event frames (its partition's).

    Messages are keyed by stream id, not slug: a stream deleted and created again under the same
    slug is a new sequence, and must not inherit a node's memory of the old one.
    """
    return partition_channel(stream_partition(stream_id))
