"""Filters of the processes' logs."""

import logging

# Lines uvicorn (and the websockets library under it) writes for every WebSocket connection.
_PER_CONNECTION = ("connection open", "connection closed")
_CLIENT_NOT_UTF8 = "Invalid UTF-8 sequence received from client."  # uvicorn's websockets-sansio


class WebSocketAccessLines(logging.Filter):
    """Drops uvicorn's lines per WebSocket connection (``"WebSocket /ws/...?token=..." [accepted]``).

    They are access-log lines that ``--no-access-log`` does not cover (uvicorn writes them to its
    error logger, for historical reasons): two writes per connect, and a socket's ``?token=`` in
    the log.

    A client's text message that is not UTF-8 (closed with 1007) is logged by uvicorn as an error
    with a traceback; it is the client's fault, like a 400: one line at INFO, no traceback.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.msg
        if message == _CLIENT_NOT_UTF8:
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg, record.exc_info, record.exc_text = (
                "a client sent text that is not UTF-8: closed with 1007",
                None,
                None,
            )
            return True
        return not (
            isinstance(message, str) and (message.startswith('%s - "WebSocket %s"') or message in _PER_CONNECTION)
        )
