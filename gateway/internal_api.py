"""The /internal/ API for other services: open and close streams, post system comments, moderate.

Thin views: authentication by service token only, the ``internal`` tier's own bucket, and the
same services (and the same comment path) as the public API.
"""

import uuid
from typing import Any

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from comments.api import (
    STREAM_CLOSED_RESPONSE,
    UNPROCESSABLE_COMMENT_RESPONSE,
    AcceptedSerializer,
    CommentCreateSerializer,
    comment_accept_response,
)
from comments.services import comment_delete
from gateway.internal_auth import IsInternalCaller, ServiceTokenAuthentication
from gateway.services import system_user_ensure
from gateway.throttles import InternalThrottle
from project import fields
from project.idempotency import IDEMPOTENCY_PARAMETER
from realtime.models import Stream
from realtime.services import stream_close, stream_open


class InternalView(APIView):
    authentication_classes = [ServiceTokenAuthentication]
    permission_classes = [IsInternalCaller]
    throttle_classes = [InternalThrottle]


class StreamOpenSerializer(serializers.Serializer):
    slug = fields.SlugField(max_length=64)
    title = fields.TextField(max_length=200)


StreamSerializer = inline_serializer(
    "InternalStream",
    {
        "slug": serializers.SlugField(),
        "title": serializers.CharField(),
        "head": serializers.IntegerField(),
        "closed": serializers.BooleanField(),
    },
)


class InternalStreamsView(InternalView):
    @extend_schema(operation_id="internal_stream_open", request=StreamOpenSerializer, responses={201: StreamSerializer})
    def post(self, request: Request) -> Response:
        """Open a stream, or reopen a closed one; idempotent by slug."""
        payload = StreamOpenSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        stream = stream_open(slug=payload.validated_data["slug"], title=payload.validated_data["title"])
        return Response(_stream_json(stream), status=status.HTTP_201_CREATED)


def _stream_json(stream: Stream) -> dict[str, Any]:
    return {"slug": stream.slug, "title": stream.title, "head": stream.last_seq, "closed": stream.closed_at is not None}


class InternalStreamCloseView(InternalView):
    @extend_schema(operation_id="internal_stream_close", request=None, responses={200: StreamSerializer})
    def post(self, request: Request, slug: str) -> Response:
        """Close a stream to new comments (subscribers get ``stream.closed``); idempotent."""
        stream = stream_close(slug=slug)
        if stream is None:
            raise exceptions.NotFound(f"No stream '{slug}'.")
        return Response(_stream_json(stream))


class BulkDeleteSerializer(serializers.Serializer):
    comment_ids = serializers.ListField(child=fields.UUIDField(), min_length=1, max_length=500)


BulkDeleteResultSerializer = inline_serializer(
    "InternalBulkDeleteResult",
    {
        "deleted": serializers.ListField(child=serializers.UUIDField()),
        "unchanged": serializers.ListField(
            child=serializers.UUIDField(), help_text="Already deleted, or no such comment."
        ),
    },
)


class InternalBulkDeleteView(InternalView):
    @extend_schema(
        operation_id="internal_moderation_bulk_delete",
        request=BulkDeleteSerializer,
        responses={200: BulkDeleteResultSerializer},
    )
    def post(self, request: Request) -> Response:
        """Delete up to 500 comments (each a ``comment.deleted`` event); idempotent per comment."""
        payload = BulkDeleteSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        deleted: list[uuid.UUID] = []
        unchanged: list[uuid.UUID] = []
        for comment_id in dict.fromkeys(payload.validated_data["comment_ids"]):
            (deleted if comment_delete(comment_id=comment_id) else unchanged).append(comment_id)
        return Response({"deleted": deleted, "unchanged": unchanged})


class InternalSystemCommentsView(InternalView):
    @extend_schema(
        operation_id="internal_system_comment_create",
        request=CommentCreateSerializer,
        parameters=[IDEMPOTENCY_PARAMETER],
        responses={202: AcceptedSerializer, 409: STREAM_CLOSED_RESPONSE, 422: UNPROCESSABLE_COMMENT_RESPONSE},
    )
    def post(self, request: Request, slug: str) -> Response:
        """A comment by the system user, through the normal comment path (accepted, then published)."""
        return comment_accept_response(request, slug, author_id=system_user_ensure())
