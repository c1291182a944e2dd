// The write calls besides posting: taps, reactions on comments, edits with If-Match, deletes.
import assert from "node:assert/strict";
import { test } from "node:test";
import { ChorusError } from "../dist/esm/index.js";
import { client, killNode, newStream, newUser, nodes, record, startNode, waitFor } from "./helpers.mjs";

test("react, unreact, edit and delete reach every subscriber as events", async () => {
  const [{ token }, slug, [node]] = await Promise.all([newUser(), newStream(), nodes()]);
  const me = client({ baseUrl: node.http, token });
  try {
    const subscription = me.subscribe(slug);
    const log = record(subscription);
    await waitFor(() => subscription.state === "live", { what: "live" });
    const { id } = await me.postComment(slug, "first draft");
    await waitFor(() => log.comments.length === 1, { what: "the comment" });

    assert.deepEqual(await me.react(id, "heart"), { comment: id, kind: "heart", reacted: true, count: 1 });
    await me.unreact(id, "heart");
    const comment = await me.getComment(id);
    const edited = await me.editComment(id, "final", { version: comment.version });
    assert.equal(edited.body, "final");
    await assert.rejects(me.editComment(id, "stale", { version: comment.version }), (error) => {
      assert.ok(error instanceof ChorusError);
      assert.equal(error.status, 412);
      assert.equal(error.code, "precondition_failed");
      return true;
    });
    await me.deleteComment(id);
    await me.deleteComment(id); // idempotent

    await waitFor(() => log.events.length === 5, { what: "five events" });
    assert.deepEqual(
      log.events.map((f) => f.event),
      ["comment.created", "reaction.added", "reaction.removed", "comment.edited", "comment.deleted"],
    );
    assert.equal(log.events[3].data.body, "final");
  } finally {
    me.close();
  }
});

test("taps go over the live socket, else over HTTP, and are dropped (not queued) when offline", async () => {
  const [{ token }, slug, all] = await Promise.all([newUser(), newStream(), nodes()]);
  const viewer = client({ baseUrl: all[0].http, token });
  const tapper = client({ baseUrl: all[1].http, token });
  try {
    const subscription = viewer.subscribe(slug);
    const log = record(subscription);
    await waitFor(() => subscription.state === "live", { what: "live" });

    assert.equal(await viewer.tap(slug, "heart"), true); // on the socket
    assert.equal(await tapper.tap(slug, "heart"), true); // no subscription: over HTTP
    await waitFor(() => log.counts.some((s) => s.counts.heart === 2), { what: "both taps counted" });
    await assert.rejects(tapper.tap(slug, "no-such-kind"), (error) => error.status === 400);

    await killNode(1);
    assert.equal(await tapper.tap(slug, "fire"), false, "dropped while the server is unreachable");
    assert.deepEqual(tapper.pending(), [], "nothing queued");
  } finally {
    viewer.close();
    tapper.close();
    await startNode(1);
  }
});
