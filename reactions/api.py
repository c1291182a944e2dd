"""REST endpoints for reactions: thin views over ``reactions.services``."""

import math
from typing import Any

from django.conf import settings
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    inline_serializer,
)
from rest_framework import exceptions, serializers, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from comments.api import comment_uuid_or_404
from project import fields
from project.api_errors import error_mapping
from project.authenticated import authenticated_user_id
from reactions.selectors import comment_reaction_counts, comment_reaction_set
from reactions.services.comment_reactions import CommentNotReactable, comment_reaction_add, comment_reaction_remove
from reactions.services.taps import TapLimited, UnknownKind, reaction_kind_check, reaction_tap
from realtime.selectors import stream_get


@extend_schema_field({"type": "string", "enum": list(settings.CHORUS_REACTION_KINDS)})
class ReactionKindField(fields.TextField):
    """A reaction kind: the schema lists ``CHORUS_REACTION_KINDS``; validation refuses any other."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(max_length=32, help_text="One of CHORUS_REACTION_KINDS.", **kwargs)


KIND_PARAMETER = OpenApiParameter(
    "kind", location=OpenApiParameter.PATH, enum=list(settings.CHORUS_REACTION_KINDS), description="A reaction kind."
)


class TapSerializer(serializers.Serializer):
    kind = ReactionKindField()

    def validate_kind(self, value: str) -> str:
        try:
            return reaction_kind_check(value)
        except UnknownKind as exc:
            raise serializers.ValidationError(str(exc)) from None


class Throttled(exceptions.Throttled):
    default_code = "rate_limited"


# Over the per-user tap limit: 429 ``rate_limited`` (a Redis failure is the table's 503).
error_mapping(TapLimited, lambda exc: Throttled(wait=max(1, math.ceil(exc.retry_after))))


TapAcceptedSerializer = inline_serializer(
    "TapAccepted",
    {
        "kind": serializers.CharField(),
        "hot": serializers.BooleanField(help_text="Counts of a hot stream arrive as coalesced frames."),
    },
)


class StreamReactionsView(APIView):
    """The reference path; JSON taps with a token or a session are answered by ``gateway.fast_lane`` first."""

    permission_classes = [IsAuthenticated]
    rate_limit_service = "reactions"
    rate_limit_priority = "low"

    @extend_schema(
        operation_id="stream_reactions_tap",
        request=TapSerializer,
        responses={
            202: TapAcceptedSerializer,
            400: OpenApiResponse(description="Unknown `kind` (the error names the field)."),
            429: OpenApiResponse(description="Over the per-user tap limit; see `Retry-After`."),
        },
        summary="Count one live tap (many per user, rate limited)",
    )
    def post(self, request: Request, slug: str) -> Response:
        payload = TapSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        stream = stream_get(slug=slug)
        if stream is None:
            raise exceptions.NotFound(f"No stream '{slug}'.")
        kind = payload.validated_data["kind"]
        # TapLimited and RedisError (taps live in Redis) answer through project.api_errors' table.
        result = reaction_tap(stream_id=stream.id, user_id=authenticated_user_id(request), kind=kind)
        return Response({"kind": kind, "hot": result.hot}, status=status.HTTP_202_ACCEPTED)


def _kind_or_400(kind: str) -> str:
    try:
        return reaction_kind_check(kind)
    except UnknownKind as exc:
        raise exceptions.ValidationError({"kind": [str(exc)]}) from None


CommentReactionSerializer = inline_serializer(
    "CommentReaction",
    {
        "comment": serializers.UUIDField(),
        "kind": serializers.CharField(),
        "reacted": serializers.BooleanField(),
        "count": serializers.IntegerField(help_text="Live reactions of this kind on the comment."),
    },
)
CommentReactionsSerializer = inline_serializer(
    "CommentReactions",
    {
        "counts": serializers.DictField(child=serializers.IntegerField()),
        "mine": serializers.ListField(child=serializers.CharField(), help_text="Empty when anonymous."),
    },
)


class CommentReactionsView(APIView):
    @extend_schema(
        operation_id="comment_reactions_list",
        responses={200: CommentReactionsSerializer},
        summary="Reaction counts of a comment, and the caller's own reactions",
    )
    def get(self, request: Request, comment_id: str) -> Response:
        parsed = comment_uuid_or_404(comment_id)
        mine: list[str] = []
        if request.user.is_authenticated:
            mine = sorted(comment_reaction_set(comment_id=parsed, user_id=request.user.pk).elements)
        return Response({"counts": comment_reaction_counts(comment_id=parsed), "mine": mine})


class CommentReactionView(APIView):
    """Each change appends a stream event that reaches every subscriber: it spends a ``writes`` token."""

    permission_classes = [IsAuthenticated]
    rate_limit_priority = "low"

    @extend_schema(
        operation_id="comment_reaction_put",
        request=None,
        parameters=[KIND_PARAMETER],
        responses={
            201: CommentReactionSerializer,
            200: OpenApiResponse(CommentReactionSerializer, description="Already there: nothing changed."),
            400: OpenApiResponse(description="Unknown `kind`."),
            404: OpenApiResponse(description="No published comment with this id."),
        },
        summary="Put the caller's reaction of this kind on a comment (idempotent)",
    )
    def put(self, request: Request, comment_id: str, kind: str) -> Response:
        parsed, kind = comment_uuid_or_404(comment_id), _kind_or_400(kind)
        try:
            result = comment_reaction_add(comment_id=parsed, user_id=authenticated_user_id(request), kind=kind)
        except CommentNotReactable:
            raise exceptions.NotFound(f"No published comment '{comment_id}'.") from None
        body = {"comment": str(parsed), "kind": kind, "reacted": True, "count": result.count}
        return Response(body, status=status.HTTP_201_CREATED if result.changed else status.HTTP_200_OK)

    @extend_schema(
        operation_id="comment_reaction_delete",
        parameters=[KIND_PARAMETER],
        responses={204: None, 400: OpenApiResponse(description="Unknown `kind`.")},
        summary="Take the caller's reaction of this kind off a comment (idempotent: 204 if absent)",
    )
    def delete(self, request: Request, comment_id: str, kind: str) -> Response:
        parsed, kind = comment_uuid_or_404(comment_id), _kind_or_400(kind)
        comment_reaction_remove(comment_id=parsed, user_id=authenticated_user_id(request), kind=kind)
        return Response(status=status.HTTP_204_NO_CONTENT)
