"""REST endpoints for comments: thin views over ``comments.services`` and ``comments.selectors``."""

import re
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
    inline_serializer,
)
from rest_framework import exceptions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from comments.caches import comment_page_cached, stream_counters
from comments.representation import comment_as_dict
from comments.selectors import comment_get, comment_tail
from comments.services import (
    AcceptOutcome,
    CommentChangeForbidden,
    CommentNotEditable,
    CommentNotFound,
    IdempotencyKeyReused,
    InvalidParent,
    StreamClosed,
    StreamNotFound,
    VersionMismatch,
    comment_accept,
    comment_delete,
    comment_edit,
)
from project import fields
from project.authenticated import authenticated_user_id
from project.idempotency import (
    IDEMPOTENCY_HEADER,
    IDEMPOTENCY_KEY_REUSED,
    IDEMPOTENCY_PARAMETER,
    idempotency_key_parse,
)
from realtime.models import Stream
from realtime.selectors import stream_get


class CommentCreateSerializer(serializers.Serializer):
    body = fields.TextField(max_length=settings.CHORUS_COMMENT_MAX_LENGTH, allow_blank=False)
    # DRF's metaclass takes declared fields off the class, so this one does not replace Field.parent
    # at run time; the stubs cannot know that.
    parent = fields.UUIDField(required=False, allow_null=True)  # type: ignore[assignment]


class CommentPageQuerySerializer(serializers.Serializer):
    after = serializers.IntegerField(required=False, default=0, min_value=0, max_value=2**62)
    epoch = serializers.IntegerField(
        required=False,
        min_value=0,
        max_value=2**62,
        help_text="The epoch `after` belongs to; another than the stream's is answered 409 `history_reset`.",
    )
    limit = serializers.IntegerField(
        required=False,
        default=settings.CHORUS_PAGE_SIZE_DEFAULT,
        min_value=1,
        max_value=settings.CHORUS_PAGE_SIZE_MAX,
    )
    tail = serializers.IntegerField(
        required=False,
        min_value=0,
        max_value=settings.CHORUS_PAGE_SIZE_MAX,
        help_text="The latest N comments and the position they are current at, instead of a page after `after`.",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # A tail is anchored at the head, a page at ``after``: both at once has no meaning.
        if "tail" in attrs:
            given = [name for name in ("after", "limit", "epoch") if name in self.initial_data]
            if given:
                raise serializers.ValidationError({"tail": [f"Cannot be combined with '{given[0]}'."]})
        return attrs


# The query of a comments page: either a page (``after``, ``limit``) or a tail (``tail``), never both.
# One exploded object parameter (OpenAPI's ``style: form``), so the schema can say "not both": its
# properties are the query parameters ``after``, ``limit`` and ``tail`` themselves.
_AFTER = {
    "type": "integer",
    "minimum": 0,
    "maximum": 2**62,
    "default": 0,
    "description": "Comments with a greater seq.",
}
_LIMIT = {
    "type": "integer",
    "minimum": 1,
    "maximum": settings.CHORUS_PAGE_SIZE_MAX,
    "default": settings.CHORUS_PAGE_SIZE_DEFAULT,
}
_TAIL = {
    "type": "integer",
    "minimum": 0,
    "maximum": settings.CHORUS_PAGE_SIZE_MAX,
    "description": "The latest N comments and the position they are current at, instead of a page after `after`.",
}
PAGE_OR_TAIL_PARAMETER = OpenApiParameter(
    "page",
    type={
        "type": "object",
        "properties": {"after": _AFTER, "limit": _LIMIT, "tail": _TAIL},
        "not": {"required": ["tail"], "anyOf": [{"required": ["after"]}, {"required": ["limit"]}]},
    },
    location=OpenApiParameter.QUERY,
    style="form",
    explode=True,
    description="`after` and `limit` (a page), or `tail` (the latest comments): not both.",
)


class CommentSerializer(serializers.Serializer):
    """Documents the comment shape produced by ``comment_as_dict``."""

    id = serializers.UUIDField()
    stream = serializers.SlugField()
    seq = serializers.IntegerField(allow_null=True)
    author = serializers.CharField()
    body = serializers.CharField()
    parent = serializers.UUIDField(allow_null=True)  # type: ignore[assignment]  # as above: not Field.parent
    status = serializers.ChoiceField(choices=["pending", "published", "deleted"])
    version = serializers.IntegerField()
    created_at = serializers.DateTimeField()


AcceptedSerializer = inline_serializer(
    "CommentAccepted",
    {"id": serializers.UUIDField(), "status": serializers.CharField(), "status_url": serializers.URLField()},
)
PositionSerializer = inline_serializer(
    "StreamPosition", {"epoch": serializers.IntegerField(), "seq": serializers.IntegerField()}
)
HistoryResetSerializer = inline_serializer(
    "HistoryReset",
    {"code": serializers.CharField(), "detail": serializers.CharField(), "position": PositionSerializer},
)
# ``(epoch, head)`` is the position the page was read at.
CountsSerializer = inline_serializer(
    "StreamCounts",
    {"epoch": serializers.IntegerField(), "head": serializers.IntegerField(), "comments": serializers.IntegerField()},
)
PageSerializer = inline_serializer(
    "CommentPage",
    {
        "results": CommentSerializer(many=True),
        "next": serializers.URLField(allow_null=True),
        "counts": CountsSerializer,
    },
)

TailSerializer = inline_serializer(
    "CommentTail",
    {
        "results": CommentSerializer(many=True),
        "position": PositionSerializer,
    },
)


STREAM_CLOSED_RESPONSE = OpenApiResponse(description="The stream is closed: it takes no new comments.")


UNPROCESSABLE_COMMENT_RESPONSE = OpenApiResponse(
    description="`parent` is no published comment of this stream (`invalid_parent`), or the Idempotency-Key "
    "was used for a different request (`idempotency_key_reused`)."
)


def stream_or_404(slug: str) -> Stream:
    stream = stream_get(slug=slug)
    if stream is None:
        raise exceptions.NotFound(f"No stream '{slug}'.")
    return stream


class StreamCommentsView(APIView):
    rate_limit_service = "comments"

    @extend_schema(
        operation_id="stream_comments_list",
        parameters=[PAGE_OR_TAIL_PARAMETER],
        responses={
            200: PolymorphicProxySerializer(
                component_name="CommentPageOrTail",
                serializers=[PageSerializer, TailSerializer],
                resource_type_field_name=None,
            ),
            409: HistoryResetSerializer,
        },
        summary="Published comments of a stream, in sequence order",
        description=(
            "A page of comments after `after`, or with `tail=N` the latest N comments and the position "
            "`{epoch, seq}` they are current at: subscribing with `?after=<seq>&epoch=<epoch>` then misses "
            "and repeats nothing. A page asked for with an `epoch` the stream has left is refused with 409 "
            "`history_reset` and the stream's position: read the tail again."
        ),
    )
    def get(self, request: Request, slug: str) -> Response:
        query = CommentPageQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        stream = stream_or_404(slug)
        if "tail" in query.validated_data:
            comments, epoch, head = comment_tail(stream_id=stream.id, count=query.validated_data["tail"])
            position = {"epoch": epoch, "seq": head}
            return Response({"results": [comment_as_dict(c) for c in comments], "position": position})
        position = {"epoch": stream.epoch, "seq": stream.last_seq}
        if query.validated_data.get("epoch", stream.epoch) != stream.epoch:
            detail = "The stream's history was reset since that position; read its tail again."
            return Response({"code": "history_reset", "detail": detail, "position": position}, status=409)
        after, limit = query.validated_data["after"], query.validated_data["limit"]
        results, has_more = comment_page_cached(stream=stream, after=after, limit=limit)
        next_url = None
        if has_more:
            # The next page carries the epoch: a walk across a reset is told, not given a mixed list.
            next_query = urlencode({"after": results[-1]["seq"], "limit": limit, "epoch": stream.epoch})
            next_url = request.build_absolute_uri(f"{request.path}?{next_query}")
        counts = {"epoch": stream.epoch, **stream_counters(stream=stream)}
        return Response({"results": results, "next": next_url, "counts": counts})

    @extend_schema(
        operation_id="stream_comments_create",
        request=CommentCreateSerializer,
        parameters=[IDEMPOTENCY_PARAMETER],
        responses={202: AcceptedSerializer, 409: STREAM_CLOSED_RESPONSE, 422: UNPROCESSABLE_COMMENT_RESPONSE},
        summary="Accept a comment for publication",
    )
    def post(self, request: Request, slug: str) -> Response:
        return comment_accept_response(request, slug, author_id=authenticated_user_id(request))


def comment_accept_response(request: Request, slug: str, *, author_id: int) -> Response:
    """Accept a comment from a DRF request for ``author_id``: the 202 (or the error) as a Response.

    Shared by the public endpoint and the internal API's system comments, so both validate,
    deduplicate and answer the same way.
    """
    status_code, body = comment_accept_answer(
        slug=slug,
        author_id=author_id,
        data=request.data,
        idempotency_header=request.headers.get(IDEMPOTENCY_HEADER),
        absolute_uri=request.build_absolute_uri,
    )
    return Response(body, status=status_code)


def comment_accept_answer(
    *,
    slug: str,
    author_id: int,
    data: Any,
    idempotency_header: str | None,
    absolute_uri: Callable[[str], str],
) -> tuple[int, dict[str, Any]]:
    """Validate a comment request, accept it and shape the answer: ``(status, JSON body)``.

    The DRF view's path (one comment, one ``INSERT``). The HTTP fast lane takes the same steps,
    ``comment_post_validate`` then ``comment_outcome_answer``, around a batch of many
    (``gateway/fast_lane.py``), so both answer alike. Bad input raises DRF's ``APIException``s
    (``ValidationError``, ``NotFound``), which the API's exception handler turns into the JSON
    error shape.
    """
    fields, key = comment_post_validate(data=data, idempotency_header=idempotency_header)
    stream = stream_or_404(slug)
    try:
        comment, created = comment_accept(stream=stream, author_id=author_id, idempotency_key=key, **fields)
    except (InvalidParent, IdempotencyKeyReused, StreamClosed) as exc:
        outcome = AcceptOutcome(error=exc)
    else:
        outcome = AcceptOutcome(comment=comment, created=created)
    return comment_outcome_answer(outcome=outcome, absolute_uri=absolute_uri)


def comment_post_validate(*, data: Any, idempotency_header: str | None) -> tuple[dict[str, Any], str | None]:
    """``({"body", "parent_id"}, idempotency key)`` of a valid request; raises ``ValidationError``."""
    key = idempotency_key_parse(idempotency_header)
    if data is None:  # DRF words a JSON ``null`` differently through is_valid: keep its wording
        CommentCreateSerializer(data=data).is_valid(raise_exception=True)
    # One shared serializer: validation keeps no state on it, and a new one per request deep-copies
    # its fields (a tenth of a node's CPU per comment under load). Same answers as ``is_valid``.
    valid = _COMMENT_CREATE.run_validation(data)
    return {"body": valid["body"], "parent_id": valid.get("parent")}, key


_COMMENT_CREATE = CommentCreateSerializer()


def comment_outcome_answer(*, outcome: AcceptOutcome, absolute_uri: Callable[[str], str]) -> tuple[int, dict[str, Any]]:
    """The answer to an accepted (or refused) comment; raises for what is the client's input."""
    error = outcome.error
    if isinstance(error, StreamNotFound):
        raise exceptions.NotFound(f"No stream '{error.slug}'.")
    if isinstance(error, InvalidParent):
        # Well formed, but no such published comment on this stream (now): 422, naming the field.
        return status.HTTP_422_UNPROCESSABLE_ENTITY, {
            "code": "invalid_parent",
            "detail": "Invalid input: parent.",
            "fields": {"parent": [str(error)]},
        }
    if isinstance(error, IdempotencyKeyReused):
        return status.HTTP_422_UNPROCESSABLE_ENTITY, IDEMPOTENCY_KEY_REUSED
    if isinstance(error, StreamClosed):
        return status.HTTP_409_CONFLICT, {"code": "stream_closed", "detail": f"{error}."}
    if error is not None:
        raise error
    comment = outcome.comment
    assert comment is not None
    return status.HTTP_202_ACCEPTED, {
        "id": str(comment.id),
        "status": comment.status,
        "status_url": absolute_uri(f"/api/v1/comments/{comment.id}"),
    }


class PreconditionFailed(exceptions.APIException):
    status_code = status.HTTP_412_PRECONDITION_FAILED
    default_detail = "The comment changed since you read it; read it again and retry."
    default_code = "precondition_failed"


class PreconditionRequired(exceptions.APIException):
    status_code = status.HTTP_428_PRECONDITION_REQUIRED
    default_detail = "Send If-Match with the ETag you read (GET /api/v1/comments/{id})."
    default_code = "precondition_required"


class CommentEditSerializer(serializers.Serializer):
    body = fields.TextField(max_length=settings.CHORUS_COMMENT_MAX_LENGTH, allow_blank=False)


def _etag(version: int) -> str:
    return f'"{version}"'


# An ETag of this API ("3", W/"3" or 3); ASCII digits only, which int() always reads (str.isdigit
# would also let through '²', which it cannot). The schema documents the same pattern.
IF_MATCH_PATTERN = r'^\s*(?:W/)?"?([0-9]{1,18})"?\s*$'


def _if_match_version(request: Request) -> int:
    raw = request.headers.get("If-Match")
    if raw is None:
        raise PreconditionRequired()
    match = re.match(IF_MATCH_PATTERN, raw)
    if match is None:
        raise exceptions.ValidationError({"If-Match": ['Must be an ETag from this API, e.g. "3".']})
    return int(match.group(1))


def comment_uuid_or_404(comment_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(comment_id)
    except ValueError:
        raise exceptions.NotFound(f"No comment '{comment_id}'.") from None


class CommentDetailView(APIView):
    @extend_schema(
        operation_id="comment_retrieve",
        responses={200: CommentSerializer},
        summary="One comment (its ETag is the version to send in If-Match)",
    )
    def get(self, request: Request, comment_id: str) -> Response:
        comment = comment_get(comment_id=comment_uuid_or_404(comment_id))
        if comment is None:
            raise exceptions.NotFound(f"No comment '{comment_id}'.")
        return Response(comment_as_dict(comment), headers={"ETag": _etag(comment.version)})

    @extend_schema(
        operation_id="comment_edit",
        request=CommentEditSerializer,
        parameters=[
            OpenApiParameter(
                "If-Match",
                location=OpenApiParameter.HEADER,
                required=True,
                description="The ETag you read.",
                pattern=IF_MATCH_PATTERN,
            )
        ],
        responses={
            200: CommentSerializer,
            403: OpenApiResponse(description="Not the author or staff."),
            409: OpenApiResponse(description="Still pending publication."),
            412: OpenApiResponse(description="Stale If-Match: the comment changed since."),
            428: OpenApiResponse(description="If-Match missing."),
        },
        summary="Edit a comment's body (optimistic locking with If-Match)",
    )
    def patch(self, request: Request, comment_id: str) -> Response:
        parsed = comment_uuid_or_404(comment_id)
        expected = _if_match_version(request)
        payload = CommentEditSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        try:
            comment = comment_edit(
                comment_id=parsed,
                editor_id=authenticated_user_id(request),
                body=payload.validated_data["body"],
                expected_version=expected,
            )
        except CommentNotFound:
            raise exceptions.NotFound(f"No comment '{comment_id}'.") from None
        except CommentChangeForbidden:
            raise exceptions.PermissionDenied("Only the author or staff may edit this comment.") from None
        except CommentNotEditable:
            return Response(
                {"code": "not_published", "detail": "The comment is still pending publication."},
                status=status.HTTP_409_CONFLICT,
            )
        except VersionMismatch as exc:
            error = PreconditionFailed()
            response = Response({"code": error.default_code, "detail": str(error.detail)}, status=error.status_code)
            response["ETag"] = _etag(exc.current)
            return response
        return Response(comment_as_dict(comment), headers={"ETag": _etag(comment.version)})

    @extend_schema(
        operation_id="comment_delete",
        responses={204: None, 403: OpenApiResponse(description="Not the author or staff.")},
        summary="Delete a comment (idempotent: 204 if it is already deleted or missing)",
    )
    def delete(self, request: Request, comment_id: str) -> Response:
        try:
            comment_delete(comment_id=comment_uuid_or_404(comment_id), actor_id=authenticated_user_id(request))
        except CommentChangeForbidden:
            raise exceptions.PermissionDenied("Only the author or staff may delete this comment.") from None
        return Response(status=status.HTTP_204_NO_CONTENT)
