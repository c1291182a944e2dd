"""``manage.py realtime_nodes``: the live ASGI nodes, their connections, streams and heartbeat age."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from redis.exceptions import RedisError

from realtime.nodes import node_list
from realtime.selectors import stream_slugs


class Command(BaseCommand):
    help = "Show the nodes in the real-time node registry (CHORUS_NODE_POOL)."

    def handle(self, *args: object, **options: object) -> None:
        try:
            nodes = node_list()
        except RedisError as exc:
            raise CommandError(f"Redis unreachable: {exc}") from exc
        if not nodes:
            self.stdout.write(f"no live node in pool '{settings.CHORUS_NODE_POOL}'")
            return
        slugs = stream_slugs(stream_ids=sorted({sid for node in nodes for sid in node.streams}))
        self.stdout.write(f"{'node':<24} {'url':<28} {'conns':>6} {'limit':>6} {'age':>5}  streams")
        for node in nodes:
            streams = ", ".join(
                f"{slugs.get(sid, sid)}:{count}" for sid, count in sorted(node.streams.items(), key=lambda i: -i[1])
            )
            self.stdout.write(
                f"{node.node_id:<24} {node.url:<28} {node.connections:>6} {node.max_connections:>6} "
                f"{node.heartbeat_age:>4.1f}s  {streams or '-'}"
            )
        total = sum(node.connections for node in nodes)
        self.stdout.write(f"{len(nodes)} node(s), {total} connection(s)")
