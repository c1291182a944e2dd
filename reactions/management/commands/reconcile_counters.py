"""Compare tap counters in Redis with PostgreSQL, report drift, and with --repair merge both ways."""

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from reactions.services.counter_flush import reaction_counters_reconcile


class Command(BaseCommand):
    help = "Report tap-counter drift between Redis and PostgreSQL; --repair merges each into the other."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--repair", action="store_true", help="raise each lower copy to the higher one")

    def handle(self, *args: Any, **options: Any) -> None:
        drifts = reaction_counters_reconcile(repair=options["repair"])
        if not drifts:
            self.stdout.write("no drift")
            return
        for drift in drifts:
            self.stdout.write(
                f"stream {drift.stream_id} {drift.kind}: redis={drift.redis} db={drift.db} ({drift.direction})"
            )
        verb = "repaired" if options["repair"] else "found (run with --repair to fix)"
        self.stdout.write(f"{len(drifts)} drifting counts {verb}")
