"""Mark the comment events already in the log with their comment, and take deleted and replaced
bodies out of them, as ``comments.services.edits`` now does on every edit and delete."""

import uuid

from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps

COMMENT_EVENTS = ("comment.created", "comment.edited", "comment.deleted")
CHUNK = 1000


def backfill(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    StreamEvent = apps.get_model("realtime", "StreamEvent")
    Comment = apps.get_model("comments", "Comment")
    events = StreamEvent.objects.filter(type__in=COMMENT_EVENTS, subject__isnull=True).only("id", "payload")
    last_id = 0
    while True:
        chunk = list(events.filter(id__gt=last_id).order_by("id")[:CHUNK])
        if not chunk:
            return
        last_id = chunk[-1].id
        ids = {uuid.UUID(event.payload["id"]) for event in chunk}
        shown = {
            comment_id: ("" if status == "deleted" else body)
            for comment_id, status, body in Comment.objects.filter(id__in=ids).values_list("id", "status", "body")
        }
        for event in chunk:
            event.subject = uuid.UUID(event.payload["id"])
            if event.subject in shown:
                event.payload = {**event.payload, "body": shown[event.subject]}
        StreamEvent.objects.bulk_update(chunk, ["subject", "payload"])


class Migration(migrations.Migration):
    dependencies = [
        ("comments", "0003_publish_batches"),
        ("realtime", "0003_streamevent_subject"),
    ]

    operations = [migrations.RunPython(backfill, migrations.RunPython.noop)]
