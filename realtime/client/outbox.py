"""Posts not yet accepted by the server, kept (in memory, or in a JSON file that outlives the
process) under the Idempotency-Key they are sent with, so a retry never doubles a post."""

import json
import os
from pathlib import Path
from typing import Any


class Outbox:
    """Entries ``{"key", "stream", "path", "payload", "created"}``, oldest first. With ``path``,
    every change is written to the file (atomically) and every read reads it, so a process started
    later, or another one sharing the file, sees the same entries; sending one twice is harmless."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self._memory: list[dict[str, Any]] = []

    def entries(self) -> list[dict[str, Any]]:
        if self.path is None:
            return list(self._memory)
        try:
            entries = json.loads(self.path.read_text())
        except (FileNotFoundError, ValueError):
            return []
        return entries if isinstance(entries, list) else []

    def add(self, entry: dict[str, Any]) -> None:
        self._write([*self.entries(), entry])

    def remove(self, key: str) -> None:
        self._write([entry for entry in self.entries() if entry.get("key") != key])

    def _write(self, entries: list[dict[str, Any]]) -> None:
        if self.path is None:
            self._memory = entries
            return
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        temporary.write_text(json.dumps(entries))
        temporary.replace(self.path)
