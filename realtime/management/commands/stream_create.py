"""``manage.py stream_create SLUG --title TITLE``: create a stream (no-op if it exists)."""

from django.core.management.base import BaseCommand, CommandParser

from realtime.services import stream_create


class Command(BaseCommand):
    help = "Create a stream if it does not exist."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("--title", default="")

    def handle(self, *args: object, slug: str, title: str, **options: object) -> None:
        stream = stream_create(slug=slug, title=title or slug)
        self.stdout.write(f"stream {stream.slug} ready (last seq {stream.last_seq})")
