"""Migration ``comments.0004`` on a database that has comment events from before it:
``python -m tests.comments.migration_process`` with ``DATABASE_URL`` naming an empty database.

Migrates to just before it, writes an edited, a deleted and an untouched comment with their
events as the old code wrote them (full bodies, no subject), migrates to the end and prints one
JSON line: each event's subject and body, by comment.
"""

import json
import uuid

import django


def main() -> None:
    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    before = [("comments", "0003_publish_batches"), ("realtime", "0002_stream_closed_at")]
    for app, name in before:
        call_command("migrate", app, name, verbosity=0)
    old = MigrationExecutor(connection).loader.project_state(before).apps
    user = old.get_model("auth", "User").objects.create(username="old-author")
    stream = old.get_model("realtime", "Stream").objects.create(slug="old", title="old")
    Comment, StreamEvent = old.get_model("comments", "Comment"), old.get_model("realtime", "StreamEvent")
    # (current body, status, edit_id, the bodies its events carried)
    rows = {
        "untouched": ("same", "published", "", ["same"]),
        "edited": ("third", "published", "eu:2", ["first", "second", "third"]),
        "deleted": ("gone", "deleted", "", ["gone", ""]),
    }
    seq = 0
    ids = {}
    for label, (body, status, edit_id, bodies) in rows.items():
        comment = Comment.objects.create(
            stream=stream, author=user, body=body, status=status, edit_id=edit_id, idempotency_key=label
        )
        ids[str(comment.id)] = label
        for index, event_body in enumerate(bodies):
            seq += 1
            event_type = "comment.created" if index == 0 else "comment.edited"
            if status == "deleted" and index == len(bodies) - 1:
                event_type = "comment.deleted"
            payload = {"id": str(comment.id), "stream": "old", "seq": 1, "body": event_body, "version": index + 1}
            StreamEvent.objects.create(stream=stream, seq=seq, event_id=uuid.uuid4(), type=event_type, payload=payload)
    seq += 1
    StreamEvent.objects.create(stream=stream, seq=seq, event_id=uuid.uuid4(), type="stream.closed", payload={})

    call_command("migrate", verbosity=0)

    from realtime.models import StreamEvent as CurrentEvent

    result: dict[str, list[object]] = {label: [] for label in [*rows, "other"]}
    for subject, payload in CurrentEvent.objects.order_by("seq").values_list("subject", "payload"):
        label = ids.get(str(subject), "other") if subject else "other"
        result[label].append([label if subject else None, payload.get("body")])
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
