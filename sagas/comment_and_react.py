"""The "comment and react" saga: post a comment, then add the author's reaction to it.

If the reaction fails for good, the comment is deleted (a ``comment.deleted`` event goes out)
and the user is told the comment was undone because the reaction failed.
"""

import uuid

from sagas.definitions import Result, SagaContext, SagaDefinition, Step, register_saga

NAME = "comment_and_react"


def post_comment(ctx: SagaContext) -> Result:
    """Accept and publish the comment now (the reaction needs it published); idempotent per key."""
    from comments.services import StreamClosed, comment_accept, comment_publish
    from delivery.reliable import PermanentError
    from realtime.selectors import stream_get_by_id

    stream = stream_get_by_id(stream_id=ctx.stream_id) if ctx.stream_id is not None else None
    if stream is None:
        raise PermanentError("the stream no longer exists")
    try:
        comment, _ = comment_accept(
            stream=stream, author_id=ctx.user_id, body=ctx.input["body"], idempotency_key=ctx.key("comment")
        )
    except StreamClosed as exc:
        raise PermanentError(str(exc)) from exc
    event = comment_publish(comment_id=comment.id)
    if event is None:
        raise PermanentError("the comment was deleted before it could be published")
    return {"comment_id": str(comment.id), "seq": event.seq}


def delete_comment(ctx: SagaContext) -> None:
    """Undo ``post_comment``: fine if the comment is already deleted or was never made."""
    from comments.selectors import comment_id_by_idempotency_key
    from comments.services import comment_delete

    comment_id = (ctx.results.get("comment") or {}).get("comment_id")
    if comment_id is None:
        found = comment_id_by_idempotency_key(author_id=ctx.user_id, idempotency_key=ctx.key("comment"))
        if found is None:
            return  # never happened
        comment_id = str(found)
    comment_delete(comment_id=uuid.UUID(comment_id))


def add_reaction(ctx: SagaContext) -> Result:
    from delivery.reliable import PermanentError
    from reactions.services.comment_reactions import CommentNotReactable, comment_reaction_add

    try:
        result = comment_reaction_add(
            comment_id=uuid.UUID(ctx.results["comment"]["comment_id"]), user_id=ctx.user_id, kind=ctx.input["kind"]
        )
    except CommentNotReactable as exc:
        raise PermanentError(str(exc)) from exc
    return {"kind": ctx.input["kind"], "added": result.changed}


def remove_reaction(ctx: SagaContext) -> None:
    """Undo ``add_reaction``: fine if it was never added or already removed."""
    from reactions.services.comment_reactions import comment_reaction_remove

    comment = ctx.results.get("comment")
    if comment:
        comment_reaction_remove(
            comment_id=uuid.UUID(comment["comment_id"]), user_id=ctx.user_id, kind=ctx.input["kind"]
        )


COMMENT_AND_REACT = register_saga(
    SagaDefinition(
        name=NAME,
        steps=(
            Step("comment", "post the comment", post_comment, delete_comment),
            Step("react", "add your reaction to it", add_reaction, remove_reaction),
        ),
    )
)
