"""``manage.py dlq``: inspect, replay and discard dead letters from a shell or a script.

    dlq list [--status open|replayed|discarded|all] [--task NAME] [--limit N]
    dlq show ID
    dlq replay (ID ... | --all | --task NAME)
    dlq discard (ID ... | --all | --task NAME)
    dlq stats

Exit codes: 0 done; 1 some IDs were unknown or not open (the others were acted on); 2 bad usage.
``replay``/``discard`` with ``--all`` or ``--task`` act on open dead letters only.
"""

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from delivery.models import DeadLetter, DeadLetterStatus
from delivery.selectors import dead_letter_counts, dead_letters
from delivery.services import dead_letter_discard, dead_letter_replay

EXIT_PARTIAL = 1


def _table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=False)]
    line = lambda cells: "  ".join(str(cell).ljust(width) for cell, width in zip(cells, widths, strict=False))  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(row) for row in rows)])


class Command(BaseCommand):
    help = "Inspect, replay and discard dead letters (exit 0 ok, 1 partly done, 2 usage)."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        listing = sub.add_parser("list", help="list dead letters")
        listing.add_argument("--status", default="open", choices=[*DeadLetterStatus.values, "all"])
        listing.add_argument("--task", default=None)
        listing.add_argument("--limit", type=int, default=100)
        show = sub.add_parser("show", help="show one dead letter with payload and traceback")
        show.add_argument("id", type=int)
        for name in ("replay", "discard"):
            act = sub.add_parser(name, help=f"{name} dead letters")
            act.add_argument("ids", nargs="*", type=int)
            act.add_argument("--all", action="store_true", help="every open dead letter")
            act.add_argument("--task", default=None, help="every open dead letter of this task")
        sub.add_parser("stats", help="counts by status")

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        handler = getattr(self, f"_{action}")
        code = handler(**options)
        if code:
            raise SystemExit(code)

    def _list(self, *, status: str, task: str | None, limit: int, **_: Any) -> int:
        letters = list(dead_letters(status=None if status == "all" else status, task_name=task)[:limit])
        if not letters:
            self.stdout.write("no dead letters")
            return 0
        rows = [
            [
                str(d.id),
                d.status,
                d.task_name,
                d.exception_type.rsplit(".", 1)[-1],
                str(d.attempts),
                d.last_failed_at.strftime("%Y-%m-%d %H:%M:%S") if d.last_failed_at else "",
                d.message_id,
            ]
            for d in letters
        ]
        self.stdout.write(
            _table(rows, ["ID", "STATUS", "TASK", "EXCEPTION", "ATTEMPTS", "LAST FAILURE (UTC)", "MESSAGE ID"])
        )
        return 0

    def _show(self, *, id: int, **_: Any) -> int:
        letter = DeadLetter.objects.filter(id=id).first()
        if letter is None:
            self.stderr.write(f"no dead letter {id}")
            return EXIT_PARTIAL
        fields = [
            ("id", letter.id),
            ("status", letter.status),
            ("task", letter.task_name),
            ("message id", letter.message_id),
            ("queue", letter.queue),
            ("routed by", letter.routed_by),
            ("attempts", letter.attempts),
            ("first failure", letter.first_failed_at),
            ("last failure", letter.last_failed_at),
            ("exception", f"{letter.exception_type}: {letter.exception_message}"),
            ("replayed as", letter.replayed_message_id or ""),
        ]
        for name, value in fields:
            self.stdout.write(f"{name + ':':<15}{value}")
        self.stdout.write("args:          " + json.dumps(letter.args))
        self.stdout.write("kwargs:        " + json.dumps(letter.kwargs, indent=2))
        self.stdout.write("traceback:\n" + (letter.traceback or "(none recorded)"))
        return 0

    def _targets(self, ids: list[int], all_: bool, task: str | None) -> list[int]:
        if bool(ids) + all_ + bool(task) != 1:
            raise CommandError("give dead letter IDs, or --all, or --task NAME (exactly one of them)", returncode=2)
        if ids:
            return ids
        return list(dead_letters(status=DeadLetterStatus.OPEN, task_name=task).values_list("id", flat=True))

    def _act(self, verb: str, service: Any, ids: list[int], all_: bool, task: str | None) -> int:
        targets = self._targets(ids, all_, task)
        done: list[int] = []
        skipped: list[int] = []
        for letter_id in targets:
            (done if service(dead_letter_id=letter_id) else skipped).append(letter_id)
        self.stdout.write(f"{verb} {len(done)}: {' '.join(map(str, done)) or '-'}")
        if skipped:
            self.stderr.write(f"skipped {len(skipped)} (unknown or not open): {' '.join(map(str, skipped))}")
            return EXIT_PARTIAL
        return 0

    def _replay(self, *, ids: list[int], all: bool, task: str | None, **_: Any) -> int:
        return self._act("replayed", dead_letter_replay, ids, all, task)

    def _discard(self, *, ids: list[int], all: bool, task: str | None, **_: Any) -> int:
        return self._act("discarded", dead_letter_discard, ids, all, task)

    def _stats(self, **_: Any) -> int:
        counts = dead_letter_counts()
        self.stdout.write(_table([[status, str(n)] for status, n in counts.items()], ["STATUS", "COUNT"]))
        return 0
