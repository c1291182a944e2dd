"""``manage.py stream_reset SLUG... | --all [--keep-log]``: start a new epoch of streams.

Without ``--keep-log`` each stream's event log is deleted (a log reset); with it the log stays and
only the epoch changes, which is what a restore from a backup needs (docs/OPERATIONS.md).
"""

from django.core.management.base import BaseCommand, CommandError, CommandParser

from realtime.models import Stream
from realtime.services import stream_epoch_bump


class Command(BaseCommand):
    help = "Start a new epoch of streams (clients resuming in the old one are told), resetting their logs."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slugs", nargs="*", metavar="SLUG")
        parser.add_argument("--all", action="store_true", help="every stream")
        parser.add_argument(
            "--keep-log", action="store_true", help="keep the event log; only bump the epoch (after a restore)"
        )

    def handle(self, *args: object, slugs: list[str], all: bool, keep_log: bool, **options: object) -> None:
        if bool(slugs) == all:
            raise CommandError("name streams, or pass --all")
        streams = Stream.objects.all() if all else Stream.objects.filter(slug__in=slugs)
        found = dict(streams.values_list("slug", "id"))
        missing = sorted(set(slugs) - set(found))
        if missing:
            raise CommandError(f"no stream {', '.join(missing)}")
        for slug, stream_id in sorted(found.items()):
            stream = stream_epoch_bump(stream_id=stream_id, reset_log=not keep_log)
            what = "epoch bumped" if keep_log else "log reset"
            self.stdout.write(f"stream {slug}: {what}; now at epoch {stream.epoch}, seq {stream.last_seq}")
