"""Real server and worker processes for integration tests: started, awaited, killed for real."""

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Self, TypeVar

import httpx

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(condition: Callable[[], T | None], *, timeout: float, interval: float = 0.05, what: str = "") -> T:
    """Poll ``condition`` until it returns something truthy, and return that; fail loudly at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        time.sleep(interval)


_running: set["ManagedProcess"] = set()


@atexit.register
def _kill_leftovers() -> None:
    """Never leave a server or worker behind, even when the run is interrupted."""
    for process in list(_running):
        process.kill()


class ManagedProcess:
    """A child process in its own process group, logging to test-artifacts/<name>.log."""

    def __init__(
        self, name: str, argv: list[str], env: dict[str, str] | None = None, *, cwd: Path | None = None
    ) -> None:
        self.name = name
        self.argv = argv
        self.cwd = cwd or ROOT  # another checkout of Chorus (a benchmark's baseline) runs from its own tree
        # Children run the production settings module; the test database and Redis reach them
        # through the environment that tests/settings.py prepared.
        self.env = {**os.environ, "DJANGO_SETTINGS_MODULE": "project.settings", **(env or {})}
        ARTIFACTS.mkdir(exist_ok=True)
        self.log_path = ARTIFACTS / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        log = self.log_path.open("ab")
        log.write(f"\n===== start {' '.join(self.argv)}\n".encode())
        log.flush()
        self.log_offset = log.tell()  # where this run's output starts
        self.proc = subprocess.Popen(
            self.argv, cwd=self.cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        _running.add(self)
        return self

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def run_log(self) -> str:
        """What this process logged since its last start (the file keeps earlier runs too)."""
        with self.log_path.open("rb") as log:
            log.seek(self.log_offset)
            return log.read().decode(errors="replace")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole process group (a Celery worker's children too)."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)
        self.proc.wait(timeout=30)
        _running.discard(self)

    def pause(self) -> None:
        """Stall the whole process group (SIGSTOP), as a frozen or overloaded host would."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.alive():
            assert self.proc is not None
            os.killpg(self.proc.pid, signal.SIGCONT)  # a paused process would not act on SIGTERM
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
        # Children of a group leader that died first may still be around.
        self.kill()


class AsgiNode(ManagedProcess):
    """One ASGI node (daphne by default) on a free port."""

    def __init__(
        self,
        name: str,
        *,
        server: str = "daphne",
        env: dict[str, str] | None = None,
        app: str = "project.asgi:application",
    ) -> None:
        self.port = free_port()
        if server == "daphne":
            argv = [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(self.port), app]
        elif server == "uvicorn":
            argv = [
                str(BIN / "uvicorn"), "--host", "127.0.0.1", "--port", str(self.port), "--ws", "websockets-sansio",
                "--ws-per-message-deflate", "false", "--loop", "uvloop", "--no-access-log", app,
            ]  # fmt: skip
        else:
            raise ValueError(server)
        # Registered in the node registry under its own name and address (discovery).
        node_env = {"CHORUS_NODE_ID": name, "CHORUS_NODE_WS_URL": f"ws://127.0.0.1:{self.port}"}
        super().__init__(name, argv, {**node_env, **(env or {})})

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def rss_bytes(self) -> int:
        """Resident memory of the server process (Linux /proc)."""
        for line in Path(f"/proc/{self.pid()}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")

    def metrics(self) -> dict[str, float]:
        """This node's /metrics samples without labels, by name."""
        text = httpx.get(f"{self.http}/metrics", timeout=5).text
        samples = {}
        for line in text.splitlines():
            if line and not line.startswith("#") and "{" not in line:
                name, value = line.rsplit(" ", 1)
                samples[name] = float(value)
        return samples

    def wait_ready(self, timeout: float = 30) -> Self:
        def ready() -> bool:
            if not self.alive():
                raise AssertionError(f"{self.name} exited:\n{self.log_text()[-3000:]}")
            try:
                return httpx.get(f"{self.http}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, timeout=timeout, interval=0.1, what=f"{self.name} to answer /healthz")
        return self


class ServedNode(AsgiNode):
    """A node started by ``scripts/serve.sh``, with exactly the server flags ``make run`` uses."""

    def __init__(self, name: str, *, server: str = "uvicorn", env: dict[str, str] | None = None) -> None:
        super().__init__(name, env={"CHORUS_ASGI_SERVER": server, "PATH": f"{BIN}:{os.environ['PATH']}", **(env or {})})
        self.argv = ["scripts/serve.sh", str(self.port)]


class CeleryWorker(ManagedProcess):
    def __init__(self, name: str, *, concurrency: int = 2, env: dict[str, str] | None = None) -> None:
        argv = [
            str(BIN / "celery"), "-A", "project", "worker", "--loglevel=INFO", f"--concurrency={concurrency}",
            f"--hostname={name}@%h", "--without-mingle", "--without-gossip",
        ]  # fmt: skip
        super().__init__(name, argv, env)

    def start(self) -> Self:
        # Remember where this run's log begins: the worker may be ready before wait_ready is called.
        self.log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        super().start()
        return self

    def wait_ready(self, timeout: float = 60) -> Self:
        def ready() -> bool:
            if not self.alive():
                raise AssertionError(f"{self.name} exited:\n{self.log_text()[-3000:]}")
            with self.log_path.open("rb") as log:
                log.seek(self.log_offset)
                return b" ready." in log.read()

        wait_until(ready, timeout=timeout, interval=0.1, what=f"{self.name} to be ready")
        return self


class CeleryBeat(ManagedProcess):
    """Celery beat with its schedule file in test-artifacts (it runs the outbox sweep)."""

    def __init__(self, name: str, *, env: dict[str, str] | None = None) -> None:
        schedule = ARTIFACTS / f"{name}-schedule"
        argv = [str(BIN / "celery"), "-A", "project", "beat", "--loglevel=INFO", f"--schedule={schedule}"]
        super().__init__(name, argv, env)


def manage(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``manage.py`` as an operator would, with the production settings module."""
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "project.settings", **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class SupervisedNode(ManagedProcess):
    """A node run as ``make cluster`` runs it: ``scripts/node.sh``, which starts it again after it exits."""

    def __init__(self, name: str, *, run_dir: Path, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.run_dir = run_dir
        env = {"CHORUS_RUN_DIR": str(run_dir), "PATH": f"{BIN}:{os.environ['PATH']}", **(env or {})}
        super().__init__(name, ["scripts/node.sh", str(self.port)], env)

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def server_pid(self) -> int | None:
        """The pid of the node's server process now (it changes at every restart)."""
        try:
            return int((self.run_dir / f"node-{self.port}.pid").read_text())
        except (FileNotFoundError, ValueError):
            return None

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.http}/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_ready(self, timeout: float = 60) -> Self:
        def ready() -> bool:
            if not self.alive():
                raise AssertionError(f"{self.name} exited:\n{self.log_text()[-3000:]}")
            return self.ready()

        wait_until(ready, timeout=timeout, interval=0.1, what=f"{self.name} to answer /readyz")
        return self


class Balancer(ManagedProcess):
    """HAProxy with Chorus's own configuration (deploy/haproxy/chorus.cfg), on free ports."""

    def __init__(self, name: str, *, nodes: list[str]) -> None:
        haproxy = shutil.which("haproxy")
        assert haproxy, "HAProxy is not installed: apt-get install haproxy (make cluster does it)"
        assert len(nodes) == 3, "chorus.cfg has three server lines"
        self.port, self.stats_port = free_port(), free_port()
        env = {
            "CHORUS_PUBLIC_BIND": f"127.0.0.1:{self.port}",
            "CHORUS_HAPROXY_STATS_BIND": f"127.0.0.1:{self.stats_port}",
            **{f"CHORUS_NODE{i}": address for i, address in enumerate(nodes, start=1)},
        }
        super().__init__(name, [haproxy, "-W", "-db", "-f", "deploy/haproxy/chorus.cfg"], env)

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def stats_url(self) -> str:
        return f"http://127.0.0.1:{self.stats_port}/stats"

    def server_states(self) -> dict[tuple[str, str], str]:
        """(backend, server) -> status (UP, DOWN, ...), from the stats page's CSV."""
        lines = httpx.get(f"{self.stats_url};csv", timeout=2).text.splitlines()
        header = lines[0].lstrip("# ").split(",")
        rows = [dict(zip(header, line.split(","), strict=False)) for line in lines[1:] if line]
        servers = [row for row in rows if row["svname"] not in ("FRONTEND", "BACKEND")]
        return {(row["pxname"], row["svname"]): row["status"] for row in servers}

    def wait_all_up(self, timeout: float = 30) -> Self:
        def all_up() -> bool:
            if not self.alive():
                raise AssertionError(f"{self.name} exited:\n{self.log_text()[-3000:]}")
            try:
                states = self.server_states()
            except httpx.HTTPError:
                return False
            return bool(states) and all(state == "UP" for state in states.values())

        wait_until(all_up, timeout=timeout, interval=0.2, what="every node to be UP in the balancer")
        return self
