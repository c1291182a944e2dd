// Resume across a node killed with SIGKILL: every event once, in order, no gap and no duplicate.
import assert from "node:assert/strict";
import { test } from "node:test";
import { assignedNode, client, killNode, newStream, newUser, nodes, record, startNode, waitFor } from "./helpers.mjs";

const COMMENTS = 60;

test("a subscriber resumes across a SIGKILL of its node with every event exactly once, in order", async () => {
  const [{ token }, slug] = await Promise.all([newUser(), newStream()]);
  const all = await nodes();
  // Kill the node discovery sends the subscriber to; the API it talks to stays up.
  const doomed = await assignedNode(slug);
  const survivor = all[1 - doomed];
  const reader = client({ baseUrl: survivor.http, token, watchdog: 5000, pingInterval: 1000 });
  const writer = client({ baseUrl: survivor.http, token });
  try {
    const subscription = reader.subscribe(slug);
    const log = record(subscription);
    await waitFor(() => subscription.state === "live", { what: "the subscriber to be live" });
    const before = subscription.stats.connections;

    const accepted = [];
    for (let i = 0; i < COMMENTS; i++) {
      if (i === COMMENTS / 3) await killNode(doomed);
      accepted.push((await writer.postComment(slug, `c${i}`)).id);
      await new Promise((resolve) => setTimeout(resolve, 30)); // a steady writer, ~20 comments a second
    }
    await waitFor(() => log.comments.length >= COMMENTS, { timeout: 60000, what: `${COMMENTS} comments` });

    assert.deepEqual(
      log.events.map((frame) => frame.seq),
      Array.from({ length: COMMENTS }, (_, i) => i + 1),
      "every event once, in order",
    );
    assert.deepEqual(log.comments.map((c) => c.comment.id), accepted, "each comment once, in the order posted");
    assert.ok(log.comments.every((c) => !c.tail));
    assert.ok(subscription.stats.connections > before, "it did reconnect");
    assert.deepEqual(subscription.position, { epoch: 1, seq: COMMENTS });
    assert.ok(log.states.includes("offline") && log.states.at(-1) === "live", log.states.join(","));
    assert.deepEqual(log.gaps, []);
    console.log(`reconnects: ${subscription.stats.connections - 1}, duplicates dropped: ${subscription.stats.duplicates}`);
  } finally {
    reader.close();
    writer.close();
    await startNode(doomed);
  }
});
