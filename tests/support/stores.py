"""Private Redis and PostgreSQL instances for fault tests: on free ports, killed and restarted for real."""

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg
import redis

from tests.support.processes import ManagedProcess, free_port, wait_until


class RedisServer(ManagedProcess):
    """A throwaway redis-server (no persistence) that a test may kill and start again."""

    def __init__(self, name: str, port: int | None = None) -> None:
        self.port = port or free_port()
        # A directory of its own: a replica's sync writes dump.rdb even with saving off, and a later
        # server started in the same directory would load that file instead of starting empty.
        self.datadir = tempfile.mkdtemp(prefix=f"chorus-{name}-")
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", self.datadir]  # fmt: skip
        super().__init__(name, argv)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        super().stop()
        shutil.rmtree(self.datadir, ignore_errors=True)

    def restart(self) -> "RedisServer":
        """Start again on the same port (after ``kill``), as a crashed Redis coming back would."""
        self.start()
        return self.wait_ready()

    def wait_ready(self, timeout: float = 10) -> "RedisServer":
        def pong() -> bool:
            try:
                return bool(redis.Redis(port=self.port, socket_connect_timeout=0.2).ping())
            except redis.RedisError:
                return False

        wait_until(pong, timeout=timeout, what=f"{self.name} to answer PING")
        return self


def _pg_bindir() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
    if found:
        return found[-1].parent
    return Path(subprocess.check_output(["pg_config", "--bindir"], text=True).strip())


def _as_postgres(argv: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run its programs as the ``postgres`` user when we are root."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *argv]
    return argv


class PostgresServer(ManagedProcess):
    """A private PostgreSQL cluster in a temporary directory, on a free port.

    ``PostgresServer.primary()`` runs initdb (trust auth, replication allowed from 127.0.0.1);
    ``replica_of(primary)`` takes a ``pg_basebackup -R`` of it, which starts as a streaming standby.
    """

    def __init__(self, name: str, datadir: Path, port: int | None = None) -> None:
        self.datadir = datadir
        self.port = port or free_port()
        postgres = str(_pg_bindir() / "postgres")
        settings = ["listen_addresses=127.0.0.1", "fsync=off", "synchronous_commit=off", "full_page_writes=off"]
        options = [part for setting in settings for part in ("-c", setting)]
        argv = _as_postgres([postgres, "-D", str(datadir), "-p", str(self.port), "-k", str(datadir), *options])
        super().__init__(name, argv)

    @staticmethod
    def _new_datadir(name: str) -> Path:
        datadir = Path(tempfile.mkdtemp(prefix=f"chorus-{name}-"))
        if os.geteuid() == 0:
            shutil.chown(datadir, "postgres", "postgres")
        datadir.chmod(0o700)
        return datadir

    @classmethod
    def primary(cls, name: str) -> "PostgresServer":
        datadir = cls._new_datadir(name)
        initdb = str(_pg_bindir() / "initdb")
        subprocess.run(
            _as_postgres([initdb, "-D", str(datadir), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"]),
            check=True,
            capture_output=True,
        )
        return cls(name, datadir)

    @classmethod
    def replica_of(cls, primary: "PostgresServer", name: str) -> "PostgresServer":
        datadir = cls._new_datadir(name)
        basebackup = str(_pg_bindir() / "pg_basebackup")
        subprocess.run(
            _as_postgres(
                [
                    basebackup,
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(primary.port),
                    "-U",
                    "postgres",
                    "-D",
                    str(datadir),
                    "-R",
                    "-X",
                    "stream",
                    "-c",
                    "fast",
                    "--no-sync",
                ]
            ),
            check=True,
            capture_output=True,
        )
        return cls(name, datadir)

    def url(self, dbname: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{dbname}"

    def connect(self, dbname: str = "postgres") -> psycopg.Connection:
        return psycopg.connect(self.url(dbname), autocommit=True, connect_timeout=2)

    def wait_ready(self, timeout: float = 30) -> "PostgresServer":
        def accepting() -> bool:
            if not self.alive():
                raise AssertionError(f"{self.name} exited:\n{self.log_text()[-3000:]}")
            try:
                with self.connect():
                    return True
            except psycopg.OperationalError:
                return False

        wait_until(accepting, timeout=timeout, interval=0.1, what=f"{self.name} to accept connections")
        return self

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.datadir, ignore_errors=True)
