"""``manage.py stuck [--older-than SECONDS] [--redrive] [--json]``: work accepted and not yet done.

Lists comments waiting for their stream's sequencer (and those set aside on their own task),
outbox messages whose task has not finished, and sagas with no progress. Anything older than
``--older-than`` (default ``CHORUS_PUBLISH_REDRIVE_SECONDS``) counts as stuck: Chorus re-drives it
on its own (Celery beat), so stuck work that stays is a sign that beat, the workers or the broker
are not running. ``--redrive`` re-drives it now instead of waiting for beat.

Exit codes: 0 nothing stuck; 1 something is stuck; 2 bad usage.
"""

import json
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.db.models import F
from django.utils import timezone

from comments.selectors import comments_pending_by_stream
from comments.services import comments_pending_redrive
from delivery.models import OutboxMessage
from delivery.selectors import outbox_open
from delivery.services import outbox_relay
from sagas.services import saga_ids_stalled


def _table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=False)]
    return "\n".join(
        "  ".join(str(cell).ljust(width) for cell, width in zip(line, widths, strict=False))
        for line in [headers, *rows]
    )


class Command(BaseCommand):
    help = "Show work accepted and not yet done (exit 0 nothing stuck, 1 something stuck, 2 usage)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than",
            type=float,
            default=None,
            help="seconds after which waiting work counts as stuck (default CHORUS_PUBLISH_REDRIVE_SECONDS)",
        )
        parser.add_argument("--redrive", action="store_true", help="re-drive stuck work now")
        parser.add_argument("--json", action="store_true", dest="as_json", help="machine-readable output")

    def handle(self, *args: Any, older_than: float | None, redrive: bool, as_json: bool, **options: Any) -> None:
        threshold = settings.CHORUS_PUBLISH_REDRIVE_SECONDS if older_than is None else older_than
        report = self._report(threshold)
        stuck = bool(report["streams"] or report["outbox"] or report["sagas"])
        if redrive and stuck:
            report["redriven"] = self._redrive(threshold)
        if as_json:
            self.stdout.write(json.dumps(report, indent=2))
        else:
            self._print(report, threshold)
        if stuck:
            raise SystemExit(1)

    def _report(self, threshold: float) -> dict[str, Any]:
        streams = [s for s in comments_pending_by_stream() if s.oldest_age_seconds >= threshold]
        return {
            "older_than_seconds": threshold,
            "streams": [
                {
                    "stream": s.slug,
                    "pending": s.pending,
                    "set_aside": s.isolated,
                    "oldest_age_seconds": round(s.oldest_age_seconds, 1),
                }
                for s in streams
            ],
            "outbox": [
                {
                    "message_id": m.message_id,
                    "task": m.task_name,
                    "age_seconds": round(m.age_seconds, 1),
                    "sent": m.attempts,
                    "next_resend": m.redrive_at.isoformat() if m.redrive_at else None,
                    "last_error": m.last_error,
                }
                for m in outbox_open(older_than_seconds=threshold)
            ],
            "sagas": [str(run_id) for run_id in saga_ids_stalled(older_than_seconds=threshold)],
        }

    def _redrive(self, threshold: float) -> dict[str, int]:
        streams = comments_pending_redrive(older_than_seconds=threshold)
        due = OutboxMessage.objects.filter(
            done_at__isnull=True, created_at__lte=timezone.now() - timedelta(seconds=threshold)
        ).update(redrive_at=F("created_at"))
        sent = outbox_relay() if due else 0
        return {"streams": len(streams), "outbox_messages": sent}

    def _print(self, report: dict[str, Any], threshold: float) -> None:
        if not (report["streams"] or report["outbox"] or report["sagas"]):
            self.stdout.write(f"nothing stuck (nothing waiting longer than {threshold:g}s)")
            return
        if report["streams"]:
            self.stdout.write(f"comments waiting for publication for over {threshold:g}s:")
            rows = [[s["stream"], s["pending"], s["set_aside"], s["oldest_age_seconds"]] for s in report["streams"]]
            self.stdout.write(_table(rows, ["STREAM", "PENDING", "SET ASIDE", "OLDEST (s)"]))
        if report["outbox"]:
            self.stdout.write(f"outbox messages whose task has not finished after {threshold:g}s:")
            rows = [
                [m["task"], m["message_id"], m["age_seconds"], m["sent"], m["last_error"][:60]]
                for m in report["outbox"]
            ]
            self.stdout.write(_table(rows, ["TASK", "MESSAGE", "AGE (s)", "SENT", "LAST ERROR"]))
        if report["sagas"]:
            self.stdout.write(f"sagas with no progress for {threshold:g}s: {', '.join(report['sagas'])}")
        if "redriven" in report:
            redriven = report["redriven"]
            self.stdout.write(
                f"re-drove {redriven['streams']} stream(s), {redriven['outbox_messages']} outbox message(s)"
            )
