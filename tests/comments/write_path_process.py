"""The write path's services on the database ``DATABASE_URL`` names (SQLite or PostgreSQL):
``python -m tests.comments.write_path_process``.

Migrates, then accepts, publishes (the sequencer's batch and the single-comment path), reacts,
edits (local and replicated), deletes and flushes tap counters, as the API and the workers do;
prints one JSON line with what every step returned and what the event log holds.
"""

import json

import django


def main() -> None:
    django.setup()
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)

    from django.contrib.auth import get_user_model

    from comments.caches import comment_page_cached
    from comments.replication import ReplicatedEdit
    from comments.services import (
        VersionMismatch,
        comment_accept,
        comment_delete,
        comment_edit,
        comment_publish,
        comment_replicated_edit_apply,
        comments_publish_batch,
    )
    from reactions.crdt import PNCounter
    from reactions.selectors import comment_reaction_set
    from reactions.services.comment_reactions import comment_reaction_add, comment_reaction_remove
    from reactions.services.counter_flush import counter_state_from_db, counter_state_merge_into_db
    from realtime.models import Stream
    from realtime.selectors import stream_event_frames
    from realtime.services import stream_create

    out: dict[str, object] = {"vendor": connection.vendor}
    users = get_user_model().objects
    author, fan, staff = (users.create(username=name, is_staff=name == "staff") for name in ("author", "fan", "staff"))
    stream = stream_create(slug="fallback", title="fallback")

    # accept: three comments, one of them retried with its idempotency key
    accepted = [
        comment_accept(stream=stream, author_id=author.pk, body=f"c{i}", idempotency_key=f"k{i}") for i in range(3)
    ]
    retried, created = comment_accept(stream=stream, author_id=author.pk, body="c0", idempotency_key="k0")
    out["accept"] = [created for _, created in accepted] + [retried.id == accepted[0][0].id and not created]
    # the sequencer's batch claims with FOR UPDATE SKIP LOCKED; a reply waits for the single-comment path
    out["batch"] = comments_publish_batch(stream_id=stream.id)
    reply, _ = comment_accept(stream=stream, author_id=fan.pk, body="reply", parent_id=accepted[0][0].id)
    published = comment_publish(comment_id=reply.id)
    assert published is not None
    out["single"] = published.seq
    first = accepted[0][0].id

    # reactions on a comment: add twice (one reaction), another user, remove
    out["reactions"] = [
        [result.changed, result.count]
        for result in (
            comment_reaction_add(comment_id=first, user_id=fan.pk, kind="heart"),
            comment_reaction_add(comment_id=first, user_id=fan.pk, kind="heart"),
            comment_reaction_add(comment_id=first, user_id=author.pk, kind="heart"),
            comment_reaction_remove(comment_id=first, user_id=fan.pk, kind="heart"),
            comment_reaction_remove(comment_id=first, user_id=fan.pk, kind="heart"),
        )
    ]
    out["mine"] = sorted(comment_reaction_set(comment_id=first, user_id=author.pk).elements)

    # edits: If-Match, a stale one, a replicated edit that wins
    edited = comment_edit(comment_id=first, editor_id=author.pk, body="c0 edited", expected_version=1)
    try:
        comment_edit(comment_id=first, editor_id=author.pk, body="stale", expected_version=1)
        out["stale"] = "accepted"
    except VersionMismatch as exc:
        out["stale"] = exc.current
    remote = ReplicatedEdit(comment_id=str(first), replica="zz", vector={"local": 1, "zz": 1}, body="c0 remote")
    out["edit"] = [edited.version, comment_replicated_edit_apply(edit=remote)]

    # deletes: by staff, then again (idempotent)
    second = accepted[1][0].id
    out["delete"] = [comment_delete(comment_id=second, actor_id=staff.pk), comment_delete(comment_id=second)]

    # tap counters: the flush's merge (per-replica maximum) into the database
    merged = [
        counter_state_merge_into_db(stream_id=stream.id, state={"clap": PNCounter(p={"r1": count})})
        for count in (5, 3, 7)
    ]
    out["taps"] = [merged, dict(counter_state_from_db(stream_id=stream.id)["clap"].p)]

    frames = [json.loads(frame) for _, frame in stream_event_frames(stream_id=stream.id, epoch=stream.epoch, after=0)]
    out["log"] = [[f["seq"], f["event"], f["data"].get("body"), f["data"].get("count")] for f in frames]
    out["head"] = Stream.objects.get(id=stream.id).last_seq
    stream.refresh_from_db()
    page, _more = comment_page_cached(stream=stream, after=0, limit=10)
    out["page"] = [comment["body"] for comment in page]
    print(json.dumps(out, default=str), flush=True)


if __name__ == "__main__":
    main()
