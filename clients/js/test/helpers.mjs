// Helpers for tests against a real Chorus stack, driven through the harness's control API
// (tests/client/control.py, started by `pytest tests/client`, which runs these files).
import { ChorusClient } from "../dist/esm/index.js";

const CONTROL = process.env.CHORUS_TEST_CONTROL;
if (!CONTROL) {
  throw new Error("CHORUS_TEST_CONTROL is not set: run these tests through `pytest tests/client` (or `make test`)");
}

export async function control(path, body) {
  const response = await fetch(CONTROL + path, {
    method: body === undefined ? "GET" : "POST",
    headers: { "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await response.json();
  if (!response.ok) throw new Error(`control ${path}: ${JSON.stringify(data)}`);
  return data;
}

export const nodes = () => control("/nodes");
export const newUser = () => control("/user", {});
export const newStream = async () => (await control("/stream", {})).slug;
export const killNode = (index) => control(`/nodes/${index}/kill`, {});
export const startNode = (index) => control(`/nodes/${index}/start`, {});
/** SIGTERM: the node drains (its sockets are handed over), then exits; resolves once it has. */
export const drainNode = (index) => control(`/nodes/${index}/term`, {});
export const pauseNode = (index) => control(`/nodes/${index}/pause`, {});
export const resumeNode = (index) => control(`/nodes/${index}/resume`, {});
export const resetHistory = (slug, seq) => control("/reset", { slug, seq });

/** Poll until `condition()` is truthy; fail with `what` at the deadline (no fixed sleeps). */
export async function waitFor(condition, { timeout = 30000, what = "condition", interval = 20 } = {}) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const result = await condition();
    if (result) return result;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, interval));
  }
}

/** Index (in the control's node list) of the node discovery assigns to a stream. */
export async function assignedNode(slug) {
  const all = await nodes();
  const answer = await (await fetch(`${all[0].http}/api/v1/realtime/connect?stream=${slug}`)).json();
  return all.findIndex((node) => node.name === answer.node);
}

/** A client with quick reconnects, for tests. */
export function client(options) {
  return new ChorusClient({ backoff: { min: 100, max: 1000 }, ...options });
}

/** Everything a subscription reports, in order. */
export function record(subscription) {
  const log = { events: [], comments: [], states: [], gaps: [], errors: [], counts: [], positions: [] };
  subscription.on("event", (frame) => void log.events.push(frame));
  subscription.on("comment", (comment, meta) => void log.comments.push({ ...meta, comment }));
  subscription.on("state", (state) => void log.states.push(state));
  subscription.on("gap", (gap) => void log.gaps.push(gap));
  subscription.on("error", (error) => void log.errors.push(error));
  subscription.on("counts", (snapshot) => void log.counts.push(snapshot));
  subscription.on("position", (position) => void log.positions.push(position));
  return log;
}

/** Published comments of a stream, read over HTTP (the order of record). */
export async function publishedComments(baseUrl, slug) {
  const page = await (await fetch(`${baseUrl}/api/v1/streams/${slug}/comments?after=0&limit=500`)).json();
  return page.results;
}

/** A WebSocket that keeps every instance and what it received (to watch the wire from a test). */
export class WatchedWebSocket extends WebSocket {
  static sockets = [];

  constructor(url) {
    super(url);
    this.url_ = url;
    this.frames = [];
    WatchedWebSocket.sockets.push(this);
    this.addEventListener("message", (message) => this.frames.push(JSON.parse(message.data)));
  }

  events() {
    return this.frames.filter((frame) => frame.type === "event");
  }
}
