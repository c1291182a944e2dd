// Credit flow control: the server holds events back until the application has consumed earlier ones.
import assert from "node:assert/strict";
import { test } from "node:test";
import { client, newStream, newUser, nodes, record, WatchedWebSocket, waitFor } from "./helpers.mjs";

const COMMENTS = 10;
const CREDIT = 3;

test("with credit, events beyond what the application has not consumed stay on the server", async () => {
  const [{ token }, slug, [node]] = await Promise.all([newUser(), newStream(), nodes()]);
  const reader = client({ baseUrl: node.http, token, WebSocket: WatchedWebSocket });
  const writer = client({ baseUrl: node.http, token });
  try {
    // Both subscriptions go through discovery, so both sit on the same node.
    const free = reader.subscribe(slug, { after: 0 });
    const freeLog = record(free);
    const paced = reader.subscribe(slug, { after: 0, credit: CREDIT });
    const releases = [];
    const handled = [];
    paced.on("comment", (comment) => {
      handled.push(comment.body);
      return new Promise((resolve) => releases.push(resolve)); // consumed when the test says so
    });
    await waitFor(() => free.state === "live" && paced.state === "live", { what: "both live" });
    const wire = WatchedWebSocket.sockets.find((ws) => ws.url_.includes(`credit=${CREDIT}`));
    assert.ok(wire, "the paced socket asked for credit in its URL");

    for (let i = 0; i < COMMENTS; i++) await writer.postComment(slug, `c${i}`);
    // The node has fanned every event out once the unpaced socket has them all; a ping answered
    // on the paced socket after that shows what the server let through.
    await waitFor(() => freeLog.events.length === COMMENTS, { what: "the unpaced subscriber to have everything" });
    const pongs = () => wire.frames.filter((f) => f.type === "pong").length;
    const seen = pongs();
    wire.send(JSON.stringify({ type: "ping" }));
    await waitFor(() => pongs() > seen, { what: "a pong" });
    assert.equal(wire.events().length, CREDIT, "the server sent only as many events as the credit");
    assert.deepEqual(handled, ["c0"], "one event at a time is handed to the application");

    for (let consumed = 1; consumed <= COMMENTS; consumed++) {
      await waitFor(() => releases.length === consumed, { what: `comment ${consumed} to be handed over` });
      assert.ok(wire.events().length <= consumed - 1 + CREDIT, `window exceeded after ${consumed - 1} consumed`);
      releases[consumed - 1]();
    }
    await waitFor(() => paced.position.seq === COMMENTS, { what: "the paced subscriber to finish" });
    assert.deepEqual(handled, Array.from({ length: COMMENTS }, (_, i) => `c${i}`));
    assert.deepEqual(wire.events().map((f) => f.seq), Array.from({ length: COMMENTS }, (_, i) => i + 1));
  } finally {
    reader.close();
    writer.close();
  }
});
