"""A second region for the replication test: ``python -m tests.comments.replica_process OPS.json``.

Runs against its own database (``DATABASE_URL``) as region ``CHORUS_REGION`` and executes a list
of operations, printing one JSON line of results: the edits it made (to ship to the other
region) and, on request, its state.
"""

import json
import sys
import uuid
from pathlib import Path
from typing import Any

import django


def main(path: str) -> None:
    django.setup()
    from django.contrib.auth import get_user_model

    from comments.models import Comment, CommentStatus
    from comments.replication import ReplicatedEdit
    from comments.services import comment_edit, comment_edit_outgoing, comment_replicated_edit_apply
    from realtime.services import stream_create

    results: dict[str, Any] = {"edits": []}
    for op in json.loads(Path(path).read_text()):
        if op["op"] == "setup":
            user, _ = get_user_model().objects.get_or_create(username=op["username"])
            stream = stream_create(slug=op["slug"], title=op["slug"])
            Comment.objects.get_or_create(
                id=uuid.UUID(op["comment_id"]),
                defaults=dict(
                    stream=stream, author=user, body=op["body"], status=CommentStatus.PUBLISHED, idempotency_key="r"
                ),
            )
        elif op["op"] == "edit":
            comment = Comment.objects.get(id=op["comment_id"])
            edited = comment_edit(
                comment_id=comment.id, editor_id=comment.author_id, body=op["body"], expected_version=comment.version
            )
            results["edits"].append(comment_edit_outgoing(comment=edited).as_dict())
        elif op["op"] == "apply":
            for edit in op["edits"]:
                comment_replicated_edit_apply(edit=ReplicatedEdit.from_dict(edit))
        elif op["op"] == "state":
            comment = Comment.objects.get(id=op["comment_id"])
            results["state"] = replica_state(comment)
    print(json.dumps(results), flush=True)


def replica_state(comment) -> dict[str, object]:
    from comments.selectors import comment_history

    return {
        "body": comment.body,
        "vector": comment.vector,
        "edit_id": comment.edit_id,
        "revisions": [list(r) for r in comment_history(comment=comment)],
    }


if __name__ == "__main__":
    main(sys.argv[1])
