"""REST endpoints for reactions: thin views over ``reactions.services``."""

import math

from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from reactions.services.taps import TapLimited, UnknownKind, reaction_kind_check, reaction_tap
from realtime.selectors import stream_get


class TapSerializer(serializers.Serializer):
    kind = serializers.CharField(max_length=32, help_text="One of CHORUS_REACTION_KINDS.")

    def validate_kind(self, value: str) -> str:
        try:
            return reaction_kind_check(value)
        except UnknownKind as exc:
            raise serializers.ValidationError(str(exc)) from None


class Throttled(exceptions.Throttled):
    default_code = "rate_limited"


TapAcceptedSerializer = inline_serializer(
    "TapAccepted",
    {
        "kind": serializers.CharField(),
        "hot": serializers.BooleanField(help_text="Counts of a hot stream arrive as coalesced frames."),
    },
)


class StreamReactionsView(APIView):
    permission_classes = [IsAuthenticated]

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
        try:
            result = reaction_tap(stream_id=stream.id, user_id=request.user.pk, kind=kind)
        except TapLimited as exc:
            raise Throttled(wait=max(1, math.ceil(exc.retry_after))) from None
        return Response({"kind": kind, "hot": result.hot}, status=status.HTTP_202_ACCEPTED)
