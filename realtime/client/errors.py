"""What the client reports when something fails, and the gap it could not fill."""

from dataclasses import dataclass
from typing import Any


class ChorusError(Exception):
    """An HTTP error with the API's JSON body, a network failure or timeout (``status`` 0), a
    socket closed for good (``close_code``), or the client closed (``code`` ``closed``)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        fields: dict[str, list[str]] | None = None,
        retry_after: float | None = None,
        close_code: int | None = None,
        body: Any = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields
        self.retry_after = retry_after
        self.close_code = close_code
        self.body = body

    @property
    def retryable(self) -> bool:
        """Worth sending again unchanged: the network, a timeout, throttling or a server error."""
        if self.status == 0:
            return self.code in ("network", "timeout")
        return self.status in (408, 429) or self.status >= 500

    def __repr__(self) -> str:
        return f"ChorusError({self.status}, {self.code!r}, {self.message!r})"


def http_error(status: int, body: Any, retry_after: str | None) -> ChorusError:
    seconds = float(retry_after) if retry_after and retry_after.strip().isdigit() else None
    payload: dict[str, Any] = body if isinstance(body, dict) else {}
    code, detail = payload.get("code"), payload.get("detail")
    return ChorusError(
        status,
        code if isinstance(code, str) else f"http_{status}",
        detail if isinstance(detail, str) else f"HTTP {status}",
        fields=payload.get("fields"),
        retry_after=seconds,
        body=body,
    )


@dataclass(frozen=True)
class Gap:
    """Events the subscription could not recover. ``from_`` is the position it had reached, ``to``
    the one it continues from. ``reason``: ``missing`` (a hole neither ``resync`` nor a reconnect
    filled: the events in between are not in the log) or ``reset`` (the stream's history was reset;
    the new tail follows)."""

    from_: dict[str, Any]
    to: dict[str, Any]
    reason: str


class StreamGap(ChorusError):
    """Raised by ``Subscription.wait_closed()`` for a gap no ``gap`` handler took."""

    def __init__(self, gap: Gap) -> None:
        super().__init__(0, "gap", f"events lost after {gap.from_} ({gap.reason}); continuing from {gap.to}")
        self.gap = gap
