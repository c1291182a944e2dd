"""Cluster settings refused at start, and partitions spread evenly over the hash slots (no cluster needed)."""

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from project.redis import partition_tags
from tests.support.processes import manage


def test_cluster_mode_without_its_own_broker_refuses_to_start() -> None:
    """CHORUS_REDIS_CLUSTER=1 with no CELERY_BROKER_URL stops at start with a message naming both."""
    result = manage("check", env={"CHORUS_REDIS_CLUSTER": "1", "CELERY_BROKER_URL": ""})
    assert result.returncode != 0
    assert "CHORUS_REDIS_CLUSTER=1 needs CELERY_BROKER_URL" in result.stderr


def test_cluster_mode_with_a_broker_of_its_own_starts() -> None:
    """The same with a broker URL passes Django's checks (no Redis is contacted at start)."""
    result = manage(
        "check", env={"CHORUS_REDIS_CLUSTER": "1", "CELERY_BROKER_URL": "amqp://guest:guest@127.0.0.1:5672//"}
    )
    assert result.returncode == 0, result.stderr


def test_a_cluster_flag_that_is_not_yes_or_no_refuses_to_start() -> None:
    """A typo in CHORUS_REDIS_CLUSTER is refused, naming the variable, rather than read as "off"."""
    result = manage("check", env={"CHORUS_REDIS_CLUSTER": "ture"})
    assert result.returncode != 0
    assert "CHORUS_REDIS_CLUSTER must be 1 or 0" in result.stderr


def test_partition_tags_fill_equal_shares_of_the_slots() -> None:
    """Tag i hashes into the i-th of n equal slot ranges, so any even split of the slots between
    masters gives them equal numbers of partitions (3 masters: 21 or 22 of 64 each)."""
    for count in (1, 3, 64, 1024):
        tags = partition_tags(count)
        assert len(set(tags)) == count
        for index, tag in enumerate(tags):
            slot = key_slot(("x{" + tag + "}y").encode())
            assert index * REDIS_CLUSTER_HASH_SLOTS // count <= slot < (index + 1) * REDIS_CLUSTER_HASH_SLOTS // count
    thirds = [0, 5461, 10923, REDIS_CLUSTER_HASH_SLOTS]  # redis-cli --cluster create's split
    per_master = [0, 0, 0]
    for tag in partition_tags(64):
        slot = key_slot(tag.encode())
        per_master[next(i for i in range(3) if thirds[i] <= slot < thirds[i + 1])] += 1
    assert sorted(per_master) == [21, 21, 22]
