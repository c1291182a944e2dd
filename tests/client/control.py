"""A small HTTP API through which tests written in JavaScript drive the real stack.

The JavaScript client's tests (clients/js/test/) run in Node against real nodes, a real worker,
PostgreSQL and Redis. What only the harness can do, they ask for here: a user with a token, a
stream, a node killed with SIGKILL, frozen or started again, a stream's history restored from an
older backup (with or without the epoch bump the restore procedure asks for), a log reset.
"""

import json
import os
import signal
import threading
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from django.db import close_old_connections, connections, transaction
from rest_framework.authtoken.models import Token

from comments.models import Comment
from realtime.models import Stream, StreamEvent
from realtime.services import stream_epoch_bump
from tests.factories import StreamFactory, UserFactory
from tests.support.processes import AsgiNode, wait_until


def stream_history_reset(*, slug: str, seq: int, bump: bool) -> None:
    """Put a stream back to an earlier head, as a restore from an older backup would: its events
    and comments after ``seq`` vanish and the head is ``seq`` again; then, if ``bump``, the restore
    procedure's epoch bump (docs/OPERATIONS.md)."""
    with transaction.atomic():
        stream = Stream.objects.select_for_update().get(slug=slug)
        StreamEvent.objects.filter(stream=stream, seq__gt=seq).delete()
        Comment.objects.filter(stream=stream, seq__gt=seq).delete()
        Stream.objects.filter(id=stream.id).update(last_seq=seq)
        if bump:
            stream_epoch_bump(stream_id=stream.id)


class Control:
    def __init__(self, nodes: list[AsgiNode], port: int = 0) -> None:
        self.nodes = nodes
        self.lock = threading.Lock()  # one process operation at a time
        control = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._answer(control.route("GET", self.path, {}))

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                self._answer(control.route("POST", self.path, body))

            def _answer(self, result: tuple[int, Any]) -> None:
                status, payload = result
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> "Control":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def route(self, method: str, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        parts = [p for p in path.split("?")[0].split("/") if p]
        routes: dict[tuple[str, ...], Callable[..., Any]] = {
            ("GET", "nodes"): self.node_list,
            ("POST", "user"): self.user,
            ("POST", "stream"): self.stream,
            ("POST", "reset"): self.reset,
            ("POST", "log-reset"): self.log_reset,
        }
        close_old_connections()
        try:
            if len(parts) == 3 and parts[0] == "nodes" and method == "POST":
                return 200, self.node_action(int(parts[1]), parts[2])
            handler = routes.get((method, *parts))
            if handler is None:
                return 404, {"error": f"no route {method} {path}"}
            return 200, handler(**body)
        except Exception as exc:
            return 500, {"error": repr(exc)}
        finally:
            connections.close_all()

    def node_list(self) -> list[dict[str, Any]]:
        return [{"name": n.name, "http": n.http, "ws": n.ws, "alive": n.alive()} for n in self.nodes]

    def node_action(self, index: int, action: str) -> dict[str, Any]:
        node = self.nodes[index]
        with self.lock:
            if action == "kill":
                node.kill()
            elif action == "start":
                if not node.alive():
                    node.start()
                node.wait_ready()
            elif action == "term":  # SIGTERM: the node drains, then exits
                os.kill(node.pid(), signal.SIGTERM)
                wait_until(lambda: not node.alive(), timeout=30, what=f"{node.name} to drain and exit")
            elif action == "pause":
                node.pause()
            elif action == "resume":
                node.resume()
            else:
                raise ValueError(action)
        return {"name": node.name, "alive": node.alive()}

    def user(self) -> dict[str, str]:
        user = UserFactory.create(username=f"js-{uuid.uuid4().hex[:8]}")
        return {"username": user.username, "password": "pw-for-tests", "token": Token.objects.create(user=user).key}

    def stream(self) -> dict[str, str]:
        return {"slug": StreamFactory.create(slug=f"js-{uuid.uuid4().hex[:10]}").slug}

    def reset(self, slug: str, seq: int, bump: bool = True) -> dict[str, Any]:
        """A restore from backup: every node goes down, the history is cut back (the epoch bumped
        unless ``bump`` is false, a restore done wrong), the nodes return."""
        with self.lock:
            for node in self.nodes:
                node.kill()
            stream_history_reset(slug=slug, seq=seq, bump=bump)
            for node in self.nodes:
                node.start()
            for node in self.nodes:
                node.wait_ready()
        return {"slug": slug, "head": seq, "epoch": Stream.objects.get(slug=slug).epoch}

    def log_reset(self, slug: str) -> dict[str, Any]:
        """``manage.py stream_reset SLUG`` while the nodes run: the log goes, a new epoch starts."""
        stream = stream_epoch_bump(stream_id=Stream.objects.get(slug=slug).id, reset_log=True)
        return {"slug": slug, "epoch": stream.epoch, "seq": stream.last_seq}
