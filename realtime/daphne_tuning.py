"""Cheaper per-frame work under daphne, applied when the ASGI application is imported.

autobahn (daphne's WebSocket library) builds debug-log arguments for every frame it sends, even
when debug logging is off, and colours them with click whenever click is importable (uvicorn
depends on click, so it is). The fan-out benchmark's profile put that colouring at about a tenth of a
daphne node's CPU. Plain text serves a log line nobody prints just as well.
"""

import contextlib


def daphne_tune() -> None:
    with contextlib.suppress(ImportError):
        import autobahn.util

        autobahn.util._HAS_CLICK = False
