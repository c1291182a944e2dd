"""The /internal/ API for other services: open streams, post system comments.

Thin views: authentication by service token only, the ``internal`` tier's own bucket, and the
same services (and the same comment path) as the public API.
"""

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from comments.api import AcceptedSerializer, CommentCreateSerializer, comment_accept_response
from gateway.internal_auth import IsInternalCaller, ServiceTokenAuthentication
from gateway.services import system_user_ensure
from gateway.throttles import InternalThrottle
from realtime.services import stream_create


class InternalView(APIView):
    authentication_classes = [ServiceTokenAuthentication]
    permission_classes = [IsInternalCaller]
    throttle_classes = [InternalThrottle]


class StreamOpenSerializer(serializers.Serializer):
    slug = serializers.SlugField(max_length=64)
    title = serializers.CharField(max_length=200)


StreamSerializer = inline_serializer(
    "InternalStream",
    {"slug": serializers.SlugField(), "title": serializers.CharField(), "head": serializers.IntegerField()},
)


class InternalStreamsView(InternalView):
    @extend_schema(operation_id="internal_stream_open", request=StreamOpenSerializer, responses={201: StreamSerializer})
    def post(self, request: Request) -> Response:
        """Open a stream; idempotent by slug (an existing stream is returned unchanged)."""
        payload = StreamOpenSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        stream = stream_create(slug=payload.validated_data["slug"], title=payload.validated_data["title"])
        return Response(
            {"slug": stream.slug, "title": stream.title, "head": stream.last_seq}, status=status.HTTP_201_CREATED
        )


class InternalSystemCommentsView(InternalView):
    @extend_schema(
        operation_id="internal_system_comment_create",
        request=CommentCreateSerializer,
        responses={202: AcceptedSerializer},
    )
    def post(self, request: Request, slug: str) -> Response:
        """A comment by the system user, through the normal comment path (accepted, then published)."""
        return comment_accept_response(request, slug, author_id=system_user_ensure())
