"""Filters of the processes' logs."""

import logging

# Lines uvicorn (and the websockets library under it) writes for every WebSocket connection.
_PER_CONNECTION = ("connection open", "connection closed")


class WebSocketAccessLines(logging.Filter):
    """Drops uvicorn's lines per WebSocket connection (``"WebSocket /ws/...?token=..." [accepted]``).

    They are access-log lines that ``--no-access-log`` does not cover (uvicorn writes them to its
    error logger, for historical reasons): two writes per connect, and a socket's ``?token=`` in
    the log.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.msg
        return not (
            isinstance(message, str) and (message.startswith('%s - "WebSocket %s"') or message in _PER_CONNECTION)
        )
