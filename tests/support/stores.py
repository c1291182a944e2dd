"""Private Redis instances for fault tests: started on a free port, killed and restarted for real."""

import redis

from tests.support.processes import ManagedProcess, free_port, wait_until


class RedisServer(ManagedProcess):
    """A throwaway redis-server (no persistence) that a test may kill and start again."""

    def __init__(self, name: str, port: int | None = None) -> None:
        self.port = port or free_port()
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        super().__init__(name, argv)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def wait_ready(self, timeout: float = 10) -> "RedisServer":
        def pong() -> bool:
            try:
                return bool(redis.Redis(port=self.port, socket_connect_timeout=0.2).ping())
            except redis.RedisError:
                return False

        wait_until(pong, timeout=timeout, what=f"{self.name} to answer PING")
        return self
