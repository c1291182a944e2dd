"""One row per tap: INSERT, then COUNT per kind for the broadcast, then publish."""

from typing import Any

from channels.db import database_sync_to_async
from django.db import connection, transaction
from rest_framework import exceptions, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from project.authenticated import authenticated_user_id
from reactions.api import TapSerializer
from reactions.frames import SNAPSHOT_KIND, counts_frame
from reactions.services.taps import UnknownKind, reaction_kind_check
from realtime import protocol
from realtime.events import snapshot_broadcast
from realtime.extensions import FrameRejected, InboundContext
from realtime.selectors import stream_get

TABLE = """
CREATE TABLE IF NOT EXISTS bench_naive_tap (
    id bigserial PRIMARY KEY,
    stream_id bigint NOT NULL,
    user_id bigint NOT NULL,
    kind varchar(32) NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS bench_naive_tap_stream_kind ON bench_naive_tap (stream_id, kind);
"""


def naive_tap(*, stream_id: int, user_id: int, kind: str) -> dict[str, int]:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO bench_naive_tap (stream_id, user_id, kind) VALUES (%s, %s, %s)", [stream_id, user_id, kind]
        )
        cursor.execute("SELECT kind, count(*) FROM bench_naive_tap WHERE stream_id = %s GROUP BY kind", [stream_id])
        counts = dict(cursor.fetchall())
    snapshot_broadcast(stream_id=stream_id, kind=SNAPSHOT_KIND, frame=counts_frame(counts=counts, version=0))
    return counts


class NaiveTapView(APIView):
    permission_classes = [IsAuthenticated]
    schema = None

    def post(self, request: Request, slug: str) -> Response:
        payload = TapSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        stream = stream_get(slug=slug)
        if stream is None:
            raise exceptions.NotFound(slug)
        kind = payload.validated_data["kind"]
        naive_tap(stream_id=stream.id, user_id=authenticated_user_id(request), kind=kind)
        return Response({"kind": kind, "hot": False}, status=status.HTTP_202_ACCEPTED)


_naive_tap = database_sync_to_async(naive_tap)


async def naive_frame_handle(context: InboundContext, frame: dict[str, Any]) -> str | None:
    user_id = context.scope.get("user_id")
    if user_id is None:
        return protocol.error_frame(code="auth_required", message="sign in to send reactions")
    try:
        kind = reaction_kind_check(frame.get("kind"))
    except UnknownKind as exc:
        raise FrameRejected(str(exc)) from None
    await _naive_tap(stream_id=context.stream_id, user_id=user_id, kind=kind)
    return None
