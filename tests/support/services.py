"""Private Redis, PostgreSQL and broker settings for fault tests that must kill a service."""

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from tests.support.processes import ManagedProcess, free_port, wait_until

RABBITMQ_URL = os.environ.get("CHORUS_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//")
PG_BIN = Path(os.environ.get("CHORUS_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))


class RedisServer(ManagedProcess):
    """A throwaway redis-server on a free port; ``kill`` and ``start`` again keep the port."""

    def __init__(self, name: str = "redis-private") -> None:
        self.port = free_port()
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        super().__init__(name, argv)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def ping(self) -> bool:
        try:
            return bool(redis.Redis(port=self.port, socket_connect_timeout=0.5).ping())
        except redis.RedisError:
            return False

    def wait_ready(self, timeout: float = 15) -> "RedisServer":
        wait_until(self.ping, timeout=timeout, what=f"redis on {self.port}")
        return self


def _as_postgres(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


class PostgresServer:
    """A private PostgreSQL cluster (initdb in a temporary directory) on a free port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="chorus-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        subprocess.run(
            _as_postgres(
                [str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8"]
            ),
            check=True,
            capture_output=True,
        )

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> "PostgresServer":
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        subprocess.run(
            _as_postgres(
                [str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start"]
            ),
            check=True,
            capture_output=True,
        )
        return self

    def stop(self, mode: str = "immediate") -> None:
        subprocess.run(
            _as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"]),
            capture_output=True,
        )

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@contextmanager
def private_postgres() -> Iterator[PostgresServer]:
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.destroy()


def unique_queue() -> str:
    return f"chorus-test-{uuid.uuid4().hex[:8]}"


def delete_queues(broker_url: str, queue: str) -> None:
    """Remove a test run's queues from a shared broker."""
    from kombu import Connection

    from delivery.queues import dead_letter_queue, task_queues

    with Connection(broker_url, connect_timeout=5) as connection:
        channel = connection.default_channel
        for q in [*task_queues(queue), dead_letter_queue(queue)]:
            try:
                q(channel).delete()
            except Exception:
                channel = connection.channel()
