// A stream's history reset (a log reset, or a restore from an older backup) is reported as a gap,
// then the subscriber continues from the new tail.
//
// The server stamps positions with the stream's epoch, which changes on a reset: a subscriber in
// an old epoch is sent a `reset` frame (or a `hello` in another epoch), wherever the new head is.
// A restore done without the epoch bump is caught only when the head is behind the subscriber
// (the server refuses `?after=` ahead of its head with close 4400; the client reads the head).
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  client,
  newStream,
  newUser,
  nodes,
  publishedComments,
  record,
  resetHistory,
  resetLog,
  waitFor,
} from "./helpers.mjs";

async function subscribedAtTen(node, token, slug) {
  const reader = client({ baseUrl: node.http, token });
  const writer = client({ baseUrl: node.http, token });
  const subscription = reader.subscribe(slug);
  const log = record(subscription);
  await waitFor(() => subscription.state === "live", { what: "live" });
  for (let i = 0; i < 10; i++) await writer.postComment(slug, `old ${i}`);
  await waitFor(() => subscription.position.seq === 10, { what: "ten events" });
  assert.deepEqual(subscription.position, { epoch: 1, seq: 10 });
  return { reader, writer, subscription, log };
}

test("a restore behind the subscriber is reported as a gap into the new epoch, then the stream goes on", async () => {
  const [{ token }, slug, [node]] = await Promise.all([newUser(), newStream(), nodes()]);
  const { reader, writer, subscription, log } = await subscribedAtTen(node, token, slug);
  try {
    const { epoch } = await resetHistory(slug, 6); // nodes down, the log cut back to 6, epoch bumped, nodes up
    await waitFor(() => log.gaps.length === 1 && subscription.state === "live", { what: "the gap", timeout: 60000 });
    assert.deepEqual(log.gaps[0], { from: { epoch: 1, seq: 10 }, to: { epoch, seq: 6 } });
    assert.deepEqual(subscription.position, { epoch, seq: 6 });
    // After the gap: the new tail (what the stream now holds), then live events from seq 7.
    const afterGap = log.comments.slice(10);
    assert.deepEqual(afterGap.map((c) => [c.comment.body, c.tail]), Array.from({ length: 6 }, (_, i) => [`old ${i}`, true]));

    await writer.postComment(slug, "new 0");
    await writer.postComment(slug, "new 1");
    await waitFor(() => subscription.position.seq === 8, { what: "the events after the reset" });
    assert.deepEqual(log.events.slice(10).map((f) => [f.epoch, f.seq]), [[epoch, 7], [epoch, 8]]);
    assert.deepEqual(log.comments.slice(16).map((c) => c.comment.body), ["new 0", "new 1"]);
    assert.equal(subscription.state, "live");
    assert.deepEqual(log.errors, []);
  } finally {
    reader.close();
    writer.close();
  }
});

test("a restore whose new head passed the saved position is told apart from new events by the epoch", async () => {
  const [{ token }, slug, [node]] = await Promise.all([newUser(), newStream(), nodes()]);
  const { reader, writer, subscription } = await subscribedAtTen(node, token, slug);
  const saved = subscription.position;
  reader.close();
  const again = client({ baseUrl: node.http, token });
  try {
    const { epoch } = await resetHistory(slug, 6);
    for (let i = 0; i < 6; i++) await writer.postComment(slug, `new ${i}`); // seq 7..12: past 10
    await waitFor(async () => (await publishedComments(node.http, slug)).length === 12, { what: "12 published" });
    const resumed = again.subscribe(slug, { after: saved.seq, epoch: saved.epoch });
    const log = record(resumed);
    await waitFor(() => log.gaps.length === 1 && resumed.state === "live", { what: "the gap" });
    assert.deepEqual(log.gaps[0], { from: { epoch: 1, seq: 10 }, to: { epoch, seq: 12 } });
    assert.deepEqual(log.events, [], "nothing of the new epoch passed off as the old one's 11 and 12");
    assert.deepEqual(log.comments.slice(-2).map((c) => [c.comment.body, c.tail]), [["new 4", true], ["new 5", true]]);
  } finally {
    again.close();
    writer.close();
  }
});

test("a restore done without the epoch bump is still caught when the head is behind", async () => {
  const [{ token }, slug, [node]] = await Promise.all([newUser(), newStream(), nodes()]);
  const { reader, writer, subscription, log } = await subscribedAtTen(node, token, slug);
  try {
    await resetHistory(slug, 6, { bump: false }); // refused with 4400, then the head read says 6 < 10
    await waitFor(() => log.gaps.length === 1 && subscription.state === "live", { what: "the gap", timeout: 60000 });
    assert.deepEqual(log.gaps[0], { from: { epoch: 1, seq: 10 }, to: { epoch: 1, seq: 6 } });
    await writer.postComment(slug, "new 0");
    await waitFor(() => subscription.position.seq === 7, { what: "the event after the reset" });
  } finally {
    reader.close();
    writer.close();
  }
});

test("a log reset while subscribed is reported as a gap, and the stream goes on in the new epoch", async () => {
  const [{ token }, slug, [node]] = await Promise.all([newUser(), newStream(), nodes()]);
  const { reader, writer, subscription, log } = await subscribedAtTen(node, token, slug);
  try {
    const { epoch } = await resetLog(slug); // nodes stay up: the socket gets a reset frame
    await waitFor(() => log.gaps.length === 1 && subscription.state === "live", { what: "the gap" });
    assert.notEqual(epoch, 1);
    assert.deepEqual(log.gaps[0], { from: { epoch: 1, seq: 10 }, to: { epoch, seq: 10 } });
    await writer.postComment(slug, "new 0");
    await waitFor(() => subscription.position.seq === 11, { what: "the event after the reset" });
    assert.deepEqual(log.events.slice(10).map((f) => [f.epoch, f.seq]), [[epoch, 11]]);
    assert.deepEqual(log.errors, []);
  } finally {
    reader.close();
    writer.close();
  }
});
