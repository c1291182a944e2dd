"""Deliberate failures for fault drills, switched on by ``CHORUS_FAULT_INJECT``.

The setting is a comma-separated list of ``point:match`` items. ``fault_point(point, subject)``
raises ``InjectedFault`` when ``point`` is listed and ``match`` occurs in ``subject``, e.g.
``CHORUS_FAULT_INJECT=comment_publish:poison`` makes every comment containing "poison" fail to
publish, which is how the dead-letter runbook is rehearsed. Empty (the default) costs nothing.
"""

from django.conf import settings


class InjectedFault(RuntimeError):
    """A failure that a fault drill asked for."""


def _faults() -> list[tuple[str, str]]:
    items = [item.strip() for item in settings.CHORUS_FAULT_INJECT.split(",") if item.strip()]
    return [tuple(item.split(":", 1)) if ":" in item else (item, "") for item in items]  # type: ignore[misc]


def fault_point(point: str, subject: str) -> None:
    if not settings.CHORUS_FAULT_INJECT:
        return
    for name, match in _faults():
        if name == point and match in subject:
            raise InjectedFault(f"injected fault at {point} ({match!r})")
