"""HTTP side of the real-time tier: discovery of the node a stream's clients should connect to."""

from django.conf import settings
from django.utils.cache import patch_cache_control
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from redis.exceptions import RedisError
from rest_framework import serializers
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from project.api_errors import ServiceUnavailable
from realtime.nodes import node_choose, node_list, public_stream_ws_url, stream_ws_url
from realtime.selectors import stream_get

# Seconds a client should wait before asking again when no node is alive (a node's heartbeat TTL).
RETRY_AFTER_SECONDS = 2


class ConnectQuery(serializers.Serializer):
    stream = serializers.SlugField(max_length=64, help_text="stream slug")


class NoLiveNode(ServiceUnavailable):
    default_detail = "No real-time node is alive; retry shortly."
    default_code = "no_live_node"
    wait = RETRY_AFTER_SECONDS  # DRF turns this into the Retry-After header


class RealtimeConnectView(APIView):
    authentication_classes: list = []
    permission_classes: list = []

    @extend_schema(
        operation_id="realtime_connect",
        summary="Choose the WebSocket node for a stream",
        description=(
            "Returns the WebSocket URL of a live node for the stream: the same node for a stream while "
            "the set of nodes is unchanged (rendezvous hashing), or the least-loaded node when that one is "
            "over its connection limit. Append `?after=SEQ` to resume. 503 with `Retry-After` when no node "
            "is alive. Behind a load balancer (`CHORUS_PUBLIC_WS_URL` set) the URL goes through the balancer, "
            "which picks the node, and `node` is null."
        ),
        parameters=[ConnectQuery],
        responses={
            200: inline_serializer(
                "RealtimeConnect", {"url": serializers.CharField(), "node": serializers.CharField(allow_null=True)}
            ),
            400: OpenApiResponse(description="missing or malformed `stream`"),
            404: OpenApiResponse(description="no such stream"),
            503: OpenApiResponse(description="no live node; retry after `Retry-After` seconds"),
        },
    )
    def get(self, request: Request) -> Response:
        query = ConnectQuery(data=request.query_params)
        if not query.is_valid():
            raise ValidationError(query.errors)
        slug = query.validated_data["stream"]
        if stream_get(slug=slug) is None:
            raise NotFound(f"no stream '{slug}'")
        if settings.CHORUS_PUBLIC_WS_URL:
            # Behind a balancer, which hashes the stream onto a ready node: hand out its address.
            response = Response({"url": public_stream_ws_url(slug=slug), "node": None})
            patch_cache_control(response, no_store=True)
            return response
        try:
            node = node_choose(nodes=node_list(), slug=slug)
        except RedisError:
            node = None
        if node is None:
            raise NoLiveNode()
        response = Response({"url": stream_ws_url(node=node, slug=slug), "node": node.node_id})
        patch_cache_control(response, no_store=True)
        return response
