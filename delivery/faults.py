"""Deliberate failures for fault drills, switched on by ``CHORUS_FAULT_INJECT``.

The setting is a comma-separated list of ``point:match[:hang|:delay<seconds>]`` items.
``fault_point(point, subject)`` raises ``InjectedFault`` when ``point`` is listed and ``match``
occurs in ``subject`` (with ``:hang``, it blocks instead, like a stuck worker, until the process
is killed; with ``:delay5``, it waits 5 seconds and lets the call go on, like a slow one), e.g.
``CHORUS_FAULT_INJECT=comment_publish:poison`` makes every comment containing "poison" fail to
publish, which is how the dead-letter runbook is rehearsed. Empty (the default) costs nothing.
"""

import time

from django.conf import settings


class InjectedFault(RuntimeError):
    """A failure that a fault drill asked for."""


def _faults() -> list[tuple[str, str, str]]:
    faults = []
    for item in settings.CHORUS_FAULT_INJECT.split(","):
        name, _, rest = item.strip().partition(":")
        match, _, mode = rest.partition(":")
        if name:
            faults.append((name, match, mode))
    return faults


def fault_point(point: str, subject: str) -> None:
    if not settings.CHORUS_FAULT_INJECT:
        return
    for name, match, mode in _faults():
        if name == point and match in subject:
            if mode == "hang":
                while True:
                    time.sleep(3600)
            if mode.startswith("delay"):
                time.sleep(float(mode.removeprefix("delay")))
                return
            raise InjectedFault(f"injected fault at {point} ({match!r})")
