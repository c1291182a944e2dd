"""REST endpoints of sagas: start "comment and react", read a saga's report, retry what failed."""

import uuid

from django.conf import settings
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from comments.api import stream_or_404
from project import fields
from project.api_errors import Conflict, error_mapping
from project.authenticated import authenticated_user_id
from project.idempotency import (
    IDEMPOTENCY_KEY_REUSED_RESPONSE,
    IDEMPOTENCY_PARAMETER,
    idempotency_key,
    idempotency_key_reused_response,
)
from reactions.api import ReactionKindField
from sagas import comment_and_react
from sagas.models import SagaRun
from sagas.selectors import saga_get, saga_report
from sagas.services import NothingToRetry, SagaIdempotencyKeyReused, saga_retry, saga_start

error_mapping(NothingToRetry, lambda exc: Conflict(str(exc), code="nothing_to_retry"))


class CommentAndReactSerializer(serializers.Serializer):
    body = fields.TextField(max_length=settings.CHORUS_COMMENT_MAX_LENGTH, allow_blank=False)
    kind = ReactionKindField()

    def validate_kind(self, kind: str) -> str:
        if kind not in settings.CHORUS_REACTION_KINDS:
            raise serializers.ValidationError(
                f"Unknown reaction kind; use one of {', '.join(settings.CHORUS_REACTION_KINDS)}."
            )
        return kind


_STEP_FIELDS: dict[str, serializers.Field] = {
    "index": serializers.IntegerField(),
    "name": serializers.CharField(),
    "description": serializers.CharField(),
    "state": serializers.CharField(),
    "attempts": serializers.IntegerField(),
    "result": serializers.JSONField(allow_null=True),
    "error": serializers.CharField(allow_null=True),
    "undone": serializers.BooleanField(),
    "compensation_error": serializers.CharField(allow_null=True),
}
SagaReportSerializer = inline_serializer(
    "SagaReport",
    {
        "id": serializers.UUIDField(),
        "type": serializers.CharField(),
        "state": serializers.CharField(),
        "summary": serializers.CharField(),
        "retryable": serializers.BooleanField(),
        "generation": serializers.IntegerField(),
        "steps": inline_serializer("SagaStep", _STEP_FIELDS, many=True),
        "created_at": serializers.DateTimeField(),
        "updated_at": serializers.DateTimeField(),
    },
)


def _with_url(request: Request, report: dict) -> dict:
    return {**report, "status_url": request.build_absolute_uri(f"/api/v1/sagas/{report['id']}")}


class CommentAndReactView(APIView):
    permission_classes = [IsAuthenticated]
    rate_limit_service = "comments"  # it posts a comment: the comment limit must hold for it too

    @extend_schema(
        operation_id="stream_comment_and_react",
        request=CommentAndReactSerializer,
        parameters=[IDEMPOTENCY_PARAMETER],
        responses={202: SagaReportSerializer, 422: IDEMPOTENCY_KEY_REUSED_RESPONSE},
        summary="Post a comment and add your reaction to it, as one saga",
    )
    def post(self, request: Request, slug: str) -> Response:
        key = idempotency_key(request)
        payload = CommentAndReactSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        stream = stream_or_404(slug)
        try:
            run, _ = saga_start(
                saga_type=comment_and_react.NAME,
                user_id=authenticated_user_id(request),
                stream_id=stream.id,
                input=dict(payload.validated_data),
                idempotency_key=key,
            )
        except SagaIdempotencyKeyReused:
            return idempotency_key_reused_response()
        return Response(_with_url(request, saga_report(run=run)), status=status.HTTP_202_ACCEPTED)


def _own_saga_or_404(request: Request, saga_id: str) -> SagaRun:
    try:
        parsed = uuid.UUID(saga_id)
    except ValueError:
        raise exceptions.NotFound(f"No saga '{saga_id}'.") from None
    user_id = None if request.user.is_staff else authenticated_user_id(request)
    run = saga_get(run_id=parsed, user_id=user_id)
    if run is None:
        raise exceptions.NotFound(f"No saga '{saga_id}'.")
    return run


class SagaDetailView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(operation_id="saga_retrieve", responses={200: SagaReportSerializer}, summary="A saga's report")
    def get(self, request: Request, saga_id: str) -> Response:
        return Response(_with_url(request, saga_report(run=_own_saga_or_404(request, saga_id))))


class SagaRetryView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        operation_id="saga_retry",
        request=None,
        responses={202: SagaReportSerializer, 409: OpenApiResponse(description="Nothing failed that can be retried.")},
        summary="Retry what failed",
    )
    def post(self, request: Request, saga_id: str) -> Response:
        run = _own_saga_or_404(request, saga_id)
        run = saga_retry(run_id=run.id)  # NothingToRetry: 409 through the error table
        return Response(_with_url(request, saga_report(run=run)), status=status.HTTP_202_ACCEPTED)
