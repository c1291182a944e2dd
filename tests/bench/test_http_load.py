"""The one HTTP load client (bench/http_load.py), its posters and its runs, against a real HTTP
server on a real socket."""

import asyncio
import json
import time

from bench.http_load import Plan, User, _Runner, burst_run, post_request, rate_run, serial_run
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

    async def scenario() -> tuple[list, list]:
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


def _request(port: int, tag: str) -> bytes:
    body = json.dumps({"body": f"{tag} @t=0"}, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json", "Authorization": "Token k", "Idempotency-Key": tag}
    return post_request(host="127.0.0.1", port=port, path="/api/v1/streams/s/comments", body=body, headers=headers)


def test_runs_count_every_answer_and_every_request_left_unanswered() -> None:
    """Serial, rate and burst runs tally chunked and sized answers, flag a 503 without a JSON code,
    reconnect after a closed keep-alive connection, and count a refused connect as no answer."""

    async def scenario():
        server = _Server()
        port = free_port()
        listener = await asyncio.start_server(server.handle, "127.0.0.1", port)
        tags = ["plain0", "chunked1", "shed2", "plain3"]
        serial = await serial_run("127.0.0.1", port, lambda i: _request(port, tags[i]), count=4)
        # The second request on a connection is taken and never answered: closed without an answer.
        race = await serial_run("127.0.0.1", port, lambda i: _request(port, f"race{i}"), count=3)
        rate = await rate_run("127.0.0.1", port, lambda i: _request(port, f"plain{i}"), rate=200, count=20,
                              connections=4)  # fmt: skip
        burst = await burst_run("127.0.0.1", port, lambda i: _request(port, f"chunked{i}"), count=20)
        listener.close()
        await listener.wait_closed()
        refused = await burst_run("127.0.0.1", port, lambda i: _request(port, "plain"), count=2)
        return serial, race, rate, burst, refused

    # when
    serial, race, rate, burst, refused = asyncio.run(scenario())

    # then
    assert serial.statuses == {202: 3, 503: 1} and not serial.failures, serial.summary()
    assert len(serial.bad_refusals) == 1  # its body has no "code"
    assert race.statuses == {202: 2} and race.failures == {"closed_without_answer": 1}, race.summary()
    assert rate.statuses == {202: 20} and len(rate.latencies) == 20, rate.summary()
    assert burst.statuses == {202: 20}, burst.summary()
    assert refused.failures == {"refused": 2} and refused.sent == 2, refused.summary()
