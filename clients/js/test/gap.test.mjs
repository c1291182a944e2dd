// A stream's history reset (a restore from an older backup) is reported as a gap, then the
// subscriber continues from the new tail.
//
// Covered: the reset that leaves the stream's head behind the subscriber's position. The server
// refuses `?after=` ahead of its head (close 4400), the client reads the head, finds it behind,
// and reports the gap. A reset whose new head has already passed the subscriber's position cannot
// be told apart from new events until the server sends stream epochs: the client then
// compares the epoch of `hello` and of each event with its own.
import assert from "node:assert/strict";
import { test } from "node:test";
import { client, newStream, newUser, nodes, record, resetHistory, waitFor } from "./helpers.mjs";

test("a history reset behind the subscriber is reported as a gap and the stream goes on from its new tail", async () => {
  const [{ token }, slug, [node]] = await Promise.all([newUser(), newStream(), nodes()]);
  const reader = client({ baseUrl: node.http, token });
  const writer = client({ baseUrl: node.http, token });
  try {
    const subscription = reader.subscribe(slug);
    const log = record(subscription);
    await waitFor(() => subscription.state === "live", { what: "live" });
    for (let i = 0; i < 10; i++) await writer.postComment(slug, `old ${i}`);
    await waitFor(() => subscription.position.seq === 10, { what: "ten events" });

    await resetHistory(slug, 6); // every node down, the log cut back to seq 6, the nodes up again
    await waitFor(() => log.gaps.length === 1 && subscription.state === "live", { what: "the gap", timeout: 60000 });
    assert.deepEqual(log.gaps[0], { from: { seq: 10 }, to: { seq: 6 } });
    assert.deepEqual(subscription.position, { seq: 6 });
    // After the gap: the new tail (what the stream now holds), then live events from seq 7.
    const afterGap = log.comments.slice(10);
    assert.deepEqual(afterGap.map((c) => [c.comment.body, c.tail]), Array.from({ length: 6 }, (_, i) => [`old ${i}`, true]));

    await writer.postComment(slug, "new 0");
    await writer.postComment(slug, "new 1");
    await waitFor(() => subscription.position.seq === 8, { what: "the events after the reset" });
    assert.deepEqual(log.events.slice(10).map((f) => f.seq), [7, 8]);
    assert.deepEqual(log.comments.slice(16).map((c) => c.comment.body), ["new 0", "new 1"]);
    assert.equal(subscription.state, "live");
    assert.deepEqual(log.errors, []);
  } finally {
    reader.close();
    writer.close();
  }
});
