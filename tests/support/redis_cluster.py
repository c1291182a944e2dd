"""A private Redis Cluster (3 masters, 1 replica each) on free ports, started by ``scripts/redis_cluster.sh``.

The same script ``make cluster`` uses, pointed at free ports and a temporary directory. A test can
SIGKILL one master and wait for its replica to take over.
"""

import os
import shutil
import signal
import socket
import tempfile

import redis

from tests.support.processes import ROOT, ManagedProcess, wait_until


def _free_cluster_ports(count: int) -> list[int]:
    """Free ports whose cluster bus port (port + 10000) is free too."""
    ports: list[int] = []
    while len(ports) < count:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port + 10000 > 65535 or port in ports:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        ports.append(port)
    return ports


class LocalRedisCluster(ManagedProcess):
    def __init__(self, name: str = "redis-cluster", *, node_timeout_ms: int = 1000) -> None:
        self.ports = _free_cluster_ports(6)
        self.datadir = tempfile.mkdtemp(prefix=f"chorus-{name}-")
        env = {
            "REDIS_CLUSTER_PORTS": " ".join(map(str, self.ports)),
            "REDIS_CLUSTER_DIR": self.datadir,
            "REDIS_CLUSTER_NODE_TIMEOUT": str(node_timeout_ms),
        }
        super().__init__(name, [str(ROOT / "scripts" / "redis_cluster.sh")], env)

    @property
    def url(self) -> str:
        """The seed the nodes are given (any node of the cluster would do)."""
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def wait_ready(self, timeout: float = 60) -> "LocalRedisCluster":
        def ready() -> bool:
            if not self.alive():
                raise AssertionError(f"{self.name} exited:\n{self.log_text()[-3000:]}")
            return "Redis Cluster ready" in self.run_log()

        wait_until(ready, timeout=timeout, interval=0.1, what="the Redis Cluster")
        return self

    def client(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, socket_timeout=2, socket_connect_timeout=1)

    def masters(self, *, via: int | None = None) -> dict[int, list[tuple[int, int]]]:
        """Live masters by port, with their slot ranges, as the cluster (seen from ``via``) says."""
        out: dict[int, list[tuple[int, int]]] = {}
        for line in self._cluster_nodes(via).splitlines():
            parts = line.split()
            flags = parts[2].split(",")
            if "master" not in flags or "fail" in flags or "fail?" in flags:
                continue
            port = int(parts[1].split("@")[0].rsplit(":", 1)[1])
            ranges = []
            for part in parts[8:]:
                if part.startswith("["):
                    continue
                low, _, high = part.partition("-")
                ranges.append((int(low), int(high or low)))
            if ranges:
                out[port] = ranges
        return out

    def _cluster_nodes(self, via: int | None) -> str:
        """CLUSTER NODES from ``via``, else from the first node that answers (one may have been killed)."""
        for port in [via] if via else self.ports:
            try:
                return self.client(port).execute_command("CLUSTER", "NODES").decode()
            except redis.ConnectionError:
                continue
        raise AssertionError("no node of the cluster answers")

    def master_of_slot(self, slot: int, *, via: int | None = None) -> int:
        for port, ranges in self.masters(via=via).items():
            if any(low <= slot <= high for low, high in ranges):
                return port
        raise AssertionError(f"no master serves slot {slot}")

    def kill_node(self, port: int) -> None:
        """SIGKILL one redis-server of the cluster, as a crashed host would."""
        pid = int(self.client(port).info("server")["process_id"])
        os.kill(pid, signal.SIGKILL)

    def wait_failover(self, dead: int, slot: int, *, timeout: float = 30) -> int:
        """Wait until a replica has taken over ``slot`` from the dead master and the cluster is ok."""
        survivor = next(port for port in self.ports if port != dead)

        def promoted() -> int | None:
            try:
                info = self.client(survivor).execute_command("CLUSTER", "INFO").decode()
                owner = self.master_of_slot(slot, via=survivor)
            except (redis.RedisError, AssertionError):
                return None
            return owner if "cluster_state:ok" in info and owner != dead else None

        return int(wait_until(promoted, timeout=timeout, interval=0.1, what=f"a replica to take over from {dead}"))

    def stop(self) -> None:
        super().stop()
        shutil.rmtree(self.datadir, ignore_errors=True)
