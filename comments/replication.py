"""Comment edits replicated between regions: version vectors and the deterministic winner rule.

Every edit carries the version vector of its replica after the edit (``{replica: edits made
there}``), its id ``<replica>:<that replica's counter>`` and its **rank**: the sum of its vector.
For two edits ``a`` and ``b``:

- ``a`` happened before ``b`` when ``a.vector <= b.vector`` entry by entry (and they differ);
- otherwise they are **concurrent** (made without seeing each other).

The body a replica shows is that of the edit with the greatest ``(rank, replica)``. A later edit
always has a strictly greater rank than anything it saw, so this never undoes causality; between
concurrent edits the higher rank (the edit that had seen more history) wins, and equal ranks go
to the greater replica name. Taking a maximum is order-independent, so replicas that have
received the same edits show the same body whatever the order of delivery. Every body that is not
current is kept as a ``CommentRevision``; it is ``superseded`` if the current edit had seen it
and ``conflict_lost`` if the two are concurrent (derived from the vectors at read time, so the
history too is the same in every region). Pure functions here; ``comments.services`` applies
them under the comment's row lock.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field

Vector = Mapping[str, int]


def vector_merge(left: Vector, right: Vector) -> dict[str, int]:
    merged = dict(left)
    for replica, count in right.items():
        merged[replica] = max(count, merged.get(replica, 0))
    return merged


def vector_leq(left: Vector, right: Vector) -> bool:
    return all(count <= right.get(replica, 0) for replica, count in left.items())


def vectors_concurrent(left: Vector, right: Vector) -> bool:
    return not vector_leq(left, right) and not vector_leq(right, left)


@dataclass(frozen=True)
class ReplicatedEdit:
    """One edit as it travels between replicas (JSON-ready through ``as_dict``/``from_dict``)."""

    comment_id: str
    replica: str
    vector: Mapping[str, int] = field(default_factory=dict)
    body: str = ""

    @property
    def edit_id(self) -> str:
        return f"{self.replica}:{self.vector.get(self.replica, 0)}"

    @property
    def rank(self) -> int:
        return sum(self.vector.values())

    @property
    def key(self) -> tuple[int, str]:
        return (self.rank, self.replica)

    def as_dict(self) -> dict[str, object]:
        return {"comment_id": self.comment_id, "replica": self.replica, "vector": dict(self.vector), "body": self.body}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> "ReplicatedEdit":
        vector = data["vector"]
        assert isinstance(vector, dict)
        return cls(
            comment_id=str(data["comment_id"]),
            replica=str(data["replica"]),
            vector={str(k): int(v) for k, v in vector.items()},
            body=str(data["body"]),
        )


def edit_key(*, edit_id: str, rank: int) -> tuple[int, str]:
    """The winner-rule key of the current edit of a comment (``""`` for the original body)."""
    return (rank, edit_id.rpartition(":")[0])


def local_edit(*, comment_id: str, replica: str, merged_vector: Vector, body: str) -> ReplicatedEdit:
    """A new edit made here: it has seen everything merged so far, plus one edit of our own."""
    vector = dict(merged_vector)
    vector[replica] = vector.get(replica, 0) + 1
    return ReplicatedEdit(comment_id=comment_id, replica=replica, vector=vector, body=body)


def revision_reason(*, revision_vector: Vector, current_vector: Vector) -> str:
    """``superseded`` if the current edit had seen this one, else ``conflict_lost``."""
    return "superseded" if vector_leq(revision_vector, current_vector) else "conflict_lost"
