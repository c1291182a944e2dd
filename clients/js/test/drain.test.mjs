// A node that drains (SIGTERM) hands its subscribers over: they move at once, losing nothing.
import assert from "node:assert/strict";
import { test } from "node:test";
import { assignedNode, client, drainNode, newStream, newUser, nodes, record, startNode, waitFor } from "./helpers.mjs";

const COMMENTS = 30;
const SLOW = { min: 3000, max: 6000 }; // a backoff a hand-over must not wait for

test("a subscriber of a draining node reconnects at once with every event exactly once, in order", async () => {
  const [{ token }, slug] = await Promise.all([newUser(), newStream()]);
  const all = await nodes();
  const draining = await assignedNode(slug);
  const other = all[1 - draining];
  const reader = client({ baseUrl: other.http, token, backoff: SLOW });
  const writer = client({ baseUrl: other.http, token });
  try {
    const subscription = reader.subscribe(slug);
    const log = record(subscription);
    const states = [];
    subscription.on("state", (state) => void states.push([state, Date.now()]));
    await waitFor(() => subscription.state === "live", { what: "the subscriber to be live" });

    const accepted = [];
    let drained;
    for (let i = 0; i < COMMENTS; i++) {
      if (i === COMMENTS / 3) drained = drainNode(draining);
      accepted.push((await writer.postComment(slug, `c${i}`)).id);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    await drained;
    await waitFor(() => log.comments.length >= COMMENTS, { timeout: 60000, what: `${COMMENTS} comments` });

    assert.deepEqual(
      log.events.map((frame) => frame.seq),
      Array.from({ length: COMMENTS }, (_, i) => i + 1),
      "every event once, in order",
    );
    assert.deepEqual(log.comments.map((c) => c.comment.id), accepted, "each comment once, in the order posted");
    assert.deepEqual(log.errors, [], "a hand-over is not an error");
    assert.equal(subscription.stats.connections, 2, "one hand-over, straight to the other node");
    const offline = states.findIndex(([state]) => state === "offline");
    const back = states.findIndex(([state], i) => i > offline && state === "live");
    assert.ok(offline >= 0 && back > offline, states.map(([state]) => state).join(","));
    const away = states[back][1] - states[offline][1];
    assert.ok(away < SLOW.min, `back in ${away} ms, sooner than any backoff`);
  } finally {
    reader.close();
    writer.close();
    await startNode(draining);
  }
});
