"""List hot streams with their tap rates; pin a stream hot or cold, or back to automatic."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from reactions.hot import hot_streams_list, stream_hot_pin
from realtime.models import Stream


class Command(BaseCommand):
    help = "List hot streams and their rates (taps/s); --pin SLUG hot|cold|auto changes one."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--pin", nargs=2, metavar=("SLUG", "MODE"), help="MODE is hot, cold or auto")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["pin"]:
            slug, mode = options["pin"]
            if mode not in {"hot", "cold", "auto"}:
                raise CommandError("MODE must be hot, cold or auto")
            stream = Stream.objects.filter(slug=slug).first()
            if stream is None:
                raise CommandError(f"no stream '{slug}'")
            stream_hot_pin(stream_id=stream.id, mode=None if mode == "auto" else mode)
            self.stdout.write(f"{slug}: pinned {mode}")
            return
        rows = hot_streams_list()
        if not rows:
            self.stdout.write("no hot streams")
            return
        slugs = dict(Stream.objects.filter(id__in=[r.stream_id for r in rows]).values_list("id", "slug"))
        self.stdout.write(f"{'stream':<32} {'taps/s':>8}  state")
        for row in rows:
            state = f"pinned {row.pinned}" if row.pinned else f"hot (detected, until {row.hot_until})"
            self.stdout.write(f"{slugs.get(row.stream_id, row.stream_id)!s:<32} {row.rate:>8}  {state}")
