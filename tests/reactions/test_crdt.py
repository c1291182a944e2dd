"""Property tests: the CRDT merges are joins (commutative, associative, idempotent)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reactions.crdt import ORSet, PNCounter

replicas = st.sampled_from(["a", "b", "c", "d"])
counts = st.dictionaries(replicas, st.integers(min_value=0, max_value=10**6), max_size=4)
counters = st.builds(PNCounter, p=counts, n=counts)
elements = st.sampled_from(["heart", "fire", "clap"])
tags = st.text(alphabet="xyz0123", min_size=1, max_size=3)
orsets = st.builds(ORSet.of, adds=st.sets(st.tuples(elements, tags), max_size=6), removed=st.sets(tags, max_size=4))


CRDTS = pytest.mark.parametrize("values", [counters, orsets], ids=["pn-counter", "or-set"])


@CRDTS
@given(data=st.data())
def test_merge_is_commutative(values, data) -> None:
    """a ⊔ b == b ⊔ a."""
    a, b = data.draw(values), data.draw(values)
    assert a.merge(b) == b.merge(a)


@CRDTS
@given(data=st.data())
def test_merge_is_associative(values, data) -> None:
    """(a ⊔ b) ⊔ c == a ⊔ (b ⊔ c)."""
    a, b, c = data.draw(values), data.draw(values), data.draw(values)
    assert a.merge(b).merge(c) == a.merge(b.merge(c))


@CRDTS
@given(data=st.data())
def test_merge_is_idempotent(values, data) -> None:
    """Merging the same state again (a duplicate delivery) changes nothing."""
    a, b = data.draw(values), data.draw(values)
    assert a.merge(a) == a
    assert a.merge(b).merge(b) == a.merge(b)


@given(st.lists(st.tuples(replicas, st.booleans()), max_size=40), st.randoms())
def test_counter_replicas_converge_to_the_exact_value(operations, rnd) -> None:
    """Replicas exchanging states in any order, with repeats, all reach the true total."""
    states = {r: PNCounter() for r in "abcd"}
    expected = 0
    for replica, up in operations:
        states[replica] = states[replica].increment(replica) if up else states[replica].decrement(replica)
        expected += 1 if up else -1
    deliveries = [s for s in states.values() for _ in range(2)]  # every state delivered twice
    rnd.shuffle(deliveries)
    merged = PNCounter()
    for state in deliveries:
        merged = merged.merge(state)
    assert merged.value == expected


def test_orset_concurrent_add_wins_over_remove() -> None:
    """A remove only cancels the adds it observed; a concurrent add survives the merge."""
    base = ORSet().add("heart", "r1:1")
    removed_here = base.remove("heart")
    added_there = base.add("heart", "r2:1")
    assert "heart" not in removed_here
    assert "heart" in removed_here.merge(added_there)
    assert removed_here.remove("fire") == removed_here
