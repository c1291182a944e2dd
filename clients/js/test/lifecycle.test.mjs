// Joining, resuming, the watchdog, terminal close codes, and close() leaving nothing behind.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createRequire } from "node:module";
import { test } from "node:test";
import * as esm from "../dist/esm/index.js";
import {
  assignedNode,
  client,
  newStream,
  newUser,
  nodes,
  pauseNode,
  record,
  resumeNode,
  WatchedWebSocket,
  waitFor,
} from "./helpers.mjs";

async function streamWith(count) {
  const [{ token }, slug, [node]] = await Promise.all([newUser(), newStream(), nodes()]);
  const writer = client({ baseUrl: node.http, token });
  const ids = [];
  for (let i = 0; i < count; i++) ids.push((await writer.postComment(slug, `c${i}`)).id);
  writer.close();
  await waitFor(async () => {
    const page = await (await fetch(`${node.http}/api/v1/streams/${slug}/comments?tail=0`)).json();
    return page.position.seq === count;
  }, { what: `${count} comments published` });
  return { token, slug, node, ids };
}

test("the ESM and CommonJS builds export the same client", () => {
  const cjs = createRequire(import.meta.url)("../dist/cjs/index.js");
  for (const name of ["ChorusClient", "ChorusError", "Subscription", "memoryStorage"]) {
    assert.equal(typeof esm[name], "function", `esm ${name}`);
    assert.equal(typeof cjs[name], "function", `cjs ${name}`);
  }
});

test("joining at the tail delivers the latest comments, then live events, without replaying the log", async () => {
  const { token, slug, node } = await streamWith(8);
  const reader = client({ baseUrl: node.http, token, tail: 3, WebSocket: WatchedWebSocket });
  const writer = client({ baseUrl: node.http, token });
  try {
    const subscription = reader.subscribe(slug);
    const log = record(subscription);
    await waitFor(() => subscription.state === "live", { what: "live" });
    assert.deepEqual(log.comments.map((c) => [c.comment.body, c.seq, c.tail]), [["c5", 6, true], ["c6", 7, true], ["c7", 8, true]]);
    assert.deepEqual(subscription.position, { epoch: 1, seq: 8 });
    const wire = WatchedWebSocket.sockets.find((ws) => ws.url_.includes(`/ws/streams/${slug}/`));
    assert.match(wire.url_, /[?&]after=8(&|$)/, "the socket resumes after the tail's position");

    await writer.postComment(slug, "live one");
    await waitFor(() => subscription.position.seq === 9, { what: "the live comment" });
    assert.deepEqual(log.events.map((f) => f.seq), [9], "nothing from the log before the tail");
    assert.deepEqual(log.comments.at(-1).comment.body, "live one");
  } finally {
    reader.close();
    writer.close();
  }
});

test("an explicit after resumes from there, and an epoch given is carried in the position and URL", async () => {
  const { token, slug, node, ids } = await streamWith(6);
  const reader = client({ baseUrl: node.http, token, WebSocket: WatchedWebSocket });
  try {
    const subscription = reader.subscribe(slug, { after: 3, epoch: 1 });
    const log = record(subscription);
    await waitFor(() => subscription.position.seq === 6, { what: "events 4 to 6" });
    assert.deepEqual(log.events.map((f) => f.seq), [4, 5, 6]);
    assert.deepEqual(log.comments.map((c) => c.comment.id), ids.slice(3));
    assert.deepEqual(subscription.position, { epoch: 1, seq: 6 });
    const wire = WatchedWebSocket.sockets.find((ws) => ws.url_.includes(`/ws/streams/${slug}/`));
    assert.match(wire.url_, /[?&]epoch=1(&|$)/);
  } finally {
    reader.close();
  }
});

test("an unknown stream closes the subscription for good with the server's reason", async () => {
  const [node] = await nodes();
  const reader = client({ baseUrl: node.http });
  try {
    const joining = reader.subscribe("no-such-stream"); // refused by the tail read (404)
    const resuming = reader.subscribe("no-such-stream", { after: 0 }); // refused by the socket (4404)
    const [joinLog, resumeLog] = [record(joining), record(resuming)];
    await waitFor(() => joining.state === "closed" && resuming.state === "closed", { what: "both closed" });
    assert.equal(joinLog.errors[0].status, 404);
    assert.equal(resumeLog.errors[0].closeCode, 4404, `${resumeLog.errors[0]} ${JSON.stringify(resumeLog.errors)}`);
    assert.equal(resumeLog.errors[0].code, "stream_not_found");
  } finally {
    reader.close();
  }
});

test("the watchdog leaves a frozen node and resumes on the other one", async () => {
  const [{ token }, slug, all] = await Promise.all([newUser(), newStream(), nodes()]);
  const frozen = await assignedNode(slug);
  const other = all[1 - frozen];
  const reader = client({ baseUrl: other.http, token, watchdog: 1500, pingInterval: 500, timeout: 2000 });
  const writer = client({ baseUrl: other.http, token });
  try {
    const subscription = reader.subscribe(slug);
    const log = record(subscription);
    await waitFor(() => subscription.state === "live", { what: "live" });
    await writer.postComment(slug, "before");
    await waitFor(() => subscription.position.seq === 1, { what: "the first comment" });

    await pauseNode(frozen); // SIGSTOP: the socket stays open but nothing comes through
    await waitFor(() => log.states.includes("offline"), { what: "the watchdog to notice", timeout: 10000 });
    await writer.postComment(slug, "after");
    await waitFor(() => subscription.position.seq === 2 && subscription.state === "live", {
      what: "the subscriber to resume on the other node",
      timeout: 30000,
    });
    assert.deepEqual(log.events.map((f) => f.seq), [1, 2]);
  } finally {
    reader.close();
    writer.close();
    await resumeNode(frozen);
  }
});

test("close() leaves no timer, socket or listener behind: the process exits on its own", async () => {
  const { token, slug, node } = await streamWith(1);
  const script = `
    import { ChorusClient } from ${JSON.stringify(new URL("../dist/esm/index.js", import.meta.url).href)};
    const client = new ChorusClient({ baseUrl: ${JSON.stringify(node.http)}, token: ${JSON.stringify(token)} });
    const subscription = client.subscribe(${JSON.stringify(slug)}, { credit: 5 });
    await new Promise((resolve) => subscription.on("state", (s) => s === "live" && resolve()));
    await client.postComment(${JSON.stringify(slug)}, "then close");
    await new Promise((resolve) => subscription.on("comment", (c) => c.body === "then close" && resolve()));
    await client.tap(${JSON.stringify(slug)}, "heart");
    client.close();
    setImmediate(() => {
      const left = process.getActiveResourcesInfo().filter((r) => r === "Timeout" || r === "Immediate");
      console.log(JSON.stringify({ state: subscription.state, timers: left.length }));
    });
  `;
  const started = Date.now();
  const result = spawnSync(process.execPath, ["--experimental-websocket", "--input-type=module", "-e", script], {
    encoding: "utf8",
    timeout: 30000,
  });
  assert.equal(result.status, 0, result.stderr);
  assert.deepEqual(JSON.parse(result.stdout.trim().split("\n").at(-1)), { state: "closed", timers: 0 });
  // The watchdog (25 s) or a reconnect timer left running would keep the process alive.
  assert.ok(Date.now() - started < 10000, `the process took ${Date.now() - started} ms to exit`);
});
