"""The write benchmark's poster (bench/http_load.py) against a real HTTP server on a real socket."""

import asyncio
import time

from bench.http_load import Plan, User, _Runner
from tests.support.processes import free_port


class _Server:
    """An HTTP/1.1 server with awkward answers: chunked bytes one at a time, a 503, and a reused
    keep-alive connection closed after it took a request (the race a client must survive)."""

    def __init__(self) -> None:
        self.keys: list[tuple[str, bytes]] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        served = 0
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                break
            headers = dict(line.split(b": ", 1) for line in head.split(b"\r\n")[1:] if b": " in line)
            body = await reader.readexactly(int(headers[b"Content-Length"]))
            tag = body.split(b'"body":"', 1)[1].split(b" ", 1)[0].decode()
            self.keys.append((tag, headers[b"Idempotency-Key"]))
            assert b"@t=" in body and headers[b"Authorization"] == b"Token k"
            if tag.startswith("race") and served:
                writer.close()  # took the request, answered nothing
                return
            served += 1
            payload = f'{{"id":"{tag}"}}'.encode()
            if tag.startswith("chunked"):
                writer.write(b"HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\n")
                for byte in b"%x\r\n%s\r\n0\r\n\r\n" % (len(payload), payload):
                    writer.write(bytes([byte]))
                    await writer.drain()
            elif tag.startswith("shed"):
                writer.write(b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 2\r\nContent-Length: 2\r\n\r\n{}")
            else:
                writer.write(b"HTTP/1.1 202 Accepted\r\nContent-Length: %d\r\n\r\n%s" % (len(payload), payload))
            await writer.drain()
        writer.close()


def test_poster_reads_every_answer_and_resends_after_a_keepalive_race() -> None:
    """Chunked and sized answers are parsed, a 503's Retry-After is seen, and a request lost to a
    closing keep-alive connection is sent once more with the same Idempotency-Key."""

    async def scenario() -> tuple[list, list]:  # type: ignore[type-arg]
        server = _Server()
        port = free_port()
        listener = await asyncio.start_server(server.handle, "127.0.0.1", port)
        tags = ["plain0", "chunked1", "shed2", "race3"]
        plan = Plan(
            users=[User(name="u", kind="token", node=0, headers=b"Authorization: Token k\r\n")],
            nodes=[("127.0.0.1", port)],
            path="/api/v1/streams/s/comments",
            schedule=[(0.05 * i, 0, tag) for i, tag in enumerate(tags)],
            start_at=time.time() + 0.05,
            max_connections_per_user=1,
            timeout=5,
        )
        report = await _Runner(plan).run()
        listener.close()
        return report.outcomes, server.keys

    # when
    outcomes, keys = asyncio.run(scenario())

    # then
    by_tag = {outcome.tag: outcome for outcome in outcomes}
    assert [by_tag[t].status for t in ("plain0", "chunked1", "shed2", "race3")] == [202, 202, 503, 202]
    assert by_tag["chunked1"].comment_id == "chunked1"
    assert by_tag["shed2"].retry_after and not by_tag["plain0"].retry_after
    assert by_tag["race3"].resent and not by_tag["plain0"].resent
    race_keys = [key for tag, key in keys if tag == "race3"]
    assert len(race_keys) == 2 and race_keys[0] == race_keys[1]
    assert all(o.sent >= o.scheduled and o.answered >= o.sent and not o.error for o in outcomes)
