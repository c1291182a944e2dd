"""Conflict-free replicated data types used by reactions: pure, dependency-free, immutable values.

Every ``merge`` here is a join of a semilattice: commutative, associative and idempotent. That is
what lets a flush be retried, delivered twice or run by two workers at once without changing the
result (``tests/reactions/test_crdt.py`` checks the three laws with hypothesis).

- ``PNCounter``: live tap counts. Each replica (an ASGI process, or a process and a hot-key shard)
  only ever raises its own entries; merge takes the per-replica maximum.
- ``ORSet``: a user's reactions on a comment (an observed-remove set). An add carries a unique
  tag; a remove tombstones the tags it has observed, so a concurrent add (a tag the remover had
  not seen) survives: add wins over a concurrent remove, and re-adding after a remove works.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType


def _max_merge(left: Mapping[str, int], right: Mapping[str, int]) -> dict[str, int]:
    merged = dict(left)
    for replica, count in right.items():
        if count > merged.get(replica, 0):
            merged[replica] = count
    return merged


def _frozen(entries: Mapping[str, int]) -> Mapping[str, int]:
    # Zero entries carry no information; dropping them keeps equal states equal.
    return MappingProxyType({k: v for k, v in sorted(entries.items()) if v})


@dataclass(frozen=True)
class PNCounter:
    """A counter of increments (``p``) and decrements (``n``) per replica.

    A replica changes only its own entries and only upwards, so an older copy of its state is
    always dominated by a newer one: ``merge`` (per-replica max) never double counts.
    """

    p: Mapping[str, int] = field(default_factory=dict)
    n: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for entries in (self.p, self.n):
            if any(v < 0 for v in entries.values()):
                raise ValueError("PN-counter entries are never negative")
        object.__setattr__(self, "p", _frozen(self.p))
        object.__setattr__(self, "n", _frozen(self.n))

    @property
    def value(self) -> int:
        return sum(self.p.values()) - sum(self.n.values())

    def increment(self, replica: str, amount: int = 1) -> PNCounter:
        if amount < 0:
            raise ValueError("increment by a non-negative amount; use decrement")
        return PNCounter(p={**self.p, replica: self.p.get(replica, 0) + amount}, n=self.n)

    def decrement(self, replica: str, amount: int = 1) -> PNCounter:
        if amount < 0:
            raise ValueError("decrement by a non-negative amount")
        return PNCounter(p=self.p, n={**self.n, replica: self.n.get(replica, 0) + amount})

    def merge(self, other: PNCounter) -> PNCounter:
        return PNCounter(p=_max_merge(self.p, other.p), n=_max_merge(self.n, other.n))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PNCounter) and dict(self.p) == dict(other.p) and dict(self.n) == dict(other.n)

    def __hash__(self) -> int:
        return hash((tuple(self.p.items()), tuple(self.n.items())))


@dataclass(frozen=True)
class ORSet:
    """An observed-remove set of strings (e.g. the reaction kinds one user put on one comment).

    ``adds`` holds ``(element, tag)`` pairs, ``removed`` the tags a remove has observed. Tags must
    be unique per add (a replica id plus a local counter, or a UUID). Both parts only grow, and
    merge is their union.
    """

    adds: frozenset[tuple[str, str]] = frozenset()
    removed: frozenset[str] = frozenset()

    @property
    def elements(self) -> frozenset[str]:
        return frozenset(element for element, tag in self.adds if tag not in self.removed)

    def __contains__(self, element: object) -> bool:
        return element in self.elements

    def add(self, element: str, tag: str) -> ORSet:
        return ORSet(adds=self.adds | {(element, tag)}, removed=self.removed)

    def remove(self, element: str) -> ORSet:
        """Tombstone every tag of ``element`` seen so far; removing an absent element is a no-op."""
        observed = {tag for e, tag in self.adds if e == element}
        return ORSet(adds=self.adds, removed=self.removed | observed)

    def merge(self, other: ORSet) -> ORSet:
        return ORSet(adds=self.adds | other.adds, removed=self.removed | other.removed)

    @classmethod
    def of(cls, adds: Iterable[tuple[str, str]] = (), removed: Iterable[str] = ()) -> ORSet:
        return cls(adds=frozenset(adds), removed=frozenset(removed))
