"""Interpreter settings for long-running Chorus processes (ASGI nodes and Celery workers).

Two pauses land in the tail of a comment's way from ``POST`` to its subscribers:

- CPython's full (generation 2) garbage collection walks every tracked object. A Django process
  holds a few hundred thousand of them from its imports alone, so a full collection that starts
  inside a request or a task stops every thread of the process for tens of milliseconds (measured:
  72 ms in the middle of a ``POST /comments``). What a process loads at startup lives until it
  exits: ``gc.freeze()`` moves it to the permanent generation, which collections skip, so they only
  walk what was allocated since. Everything allocated later is collected as before; only a cycle
  among startup objects that later becomes unreachable would stay (startup state is module-level
  and lives as long as the process anyway).
- A node's event loop fans each event out to hundreds of sockets while Django's synchronous views
  run in threads beside it. A thread waiting for the GIL gets it only when the holder releases it
  or the switch interval (5 ms by default) expires, and a request does a dozen I/O calls, each
  followed by such a wait: a comment posted to a busy node waited tens of milliseconds for the
  GIL alone. A shorter interval hands the GIL over sooner; it costs nothing while only one thread
  runs.
"""

import gc
import sys

from django.conf import settings


def freeze_startup_heap() -> None:
    """Collect once, then exempt everything alive now from future collections.

    Call it when a process has finished loading: an ASGI node once its application is built, a
    Celery worker once its tasks are loaded (before it forks its pool). ``CHORUS_GC_FREEZE=0`` turns
    it off.
    """
    if not settings.CHORUS_GC_FREEZE:
        return
    gc.collect()
    gc.freeze()


def shorten_gil_switch_interval() -> None:
    """Apply ``CHORUS_GIL_SWITCH_INTERVAL`` (seconds; 0 keeps CPython's default)."""
    if settings.CHORUS_GIL_SWITCH_INTERVAL > 0:
        sys.setswitchinterval(settings.CHORUS_GIL_SWITCH_INTERVAL)
