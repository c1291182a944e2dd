"""Streams and their event log, the order of record for everything a subscriber sees."""

from django.db import models
from django.utils import timezone


class Stream(models.Model):
    """A live stream that comments and reactions attach to.

    ``last_seq`` is the last sequence number handed out; it only moves inside the transaction that
    appends the matching event, so a stream's sequence is gapless.

    A position in a stream is ``(epoch, seq)``. ``epoch`` changes when the stream's log is reset or
    the database is restored from a backup (``realtime.services.stream_epoch_bump``): a restore can
    hand out again sequence numbers that clients have already seen, with different events, so a
    client resuming in an older epoch is told its history was reset instead of being served a
    wrong catch-up. Events of the current epoch are those with ``seq > epoch_seq``; sequence numbers
    keep growing across a log reset, so comments' ``seq`` stay unique.
    """

    slug = models.SlugField(max_length=64, unique=True)
    title = models.CharField(max_length=200)
    last_seq = models.BigIntegerField(default=0)
    # Opaque to clients (compared for equality); in the server it only grows (``stream_epoch_bump``).
    epoch = models.BigIntegerField(default=1)
    epoch_seq = models.BigIntegerField(default=0)  # the head when the current epoch began
    created_at = models.DateTimeField(auto_now_add=True)
    # Set when the stream is closed: it stays readable, but takes no new comments.
    closed_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return self.slug


class StreamEvent(models.Model):
    """One event of a stream, numbered by ``seq`` (1, 2, 3, ... per stream, never a gap).

    ``event_id`` is derived from what caused the event, so the same cause can never append twice.
    Frames are encoded from ``payload`` whenever the log is read (replay, resync, gap repair), so
    a payload rewritten by ``stream_events_redact`` is what every later reader gets; ``seq``,
    ``type`` and ``event_id`` never change.
    """

    stream = models.ForeignKey(Stream, on_delete=models.CASCADE, related_name="events")
    seq = models.BigIntegerField()
    event_id = models.UUIDField(unique=True)
    type = models.CharField(max_length=64)
    payload = models.JSONField()
    created_at = models.DateTimeField(default=timezone.now)
    # The thing (a comment) whose content the payload carries, so that content can be taken out of
    # the log when it is deleted or replaced. Null for events that carry no one's content.
    subject = models.UUIDField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["stream", "seq"], name="stream_event_seq_unique"),
        ]
        indexes = [
            models.Index(
                fields=["subject"], name="stream_event_subject_idx", condition=models.Q(subject__isnull=False)
            ),
        ]

    def __str__(self) -> str:
        return f"{self.stream_id}#{self.seq} {self.type}"
