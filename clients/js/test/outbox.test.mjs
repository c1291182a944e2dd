// Posting exactly once: the outbox keeps a post (and its Idempotency-Key) until the server takes it.
import assert from "node:assert/strict";
import { test } from "node:test";
import { ChorusError, memoryStorage } from "../dist/esm/index.js";
import { client, killNode, newStream, newUser, nodes, publishedComments, startNode, waitFor } from "./helpers.mjs";

/** A fetch that records each attempt, and can lose a response after the server has acted on it. */
function recordingFetch({ loseResponses = 0 } = {}) {
  const attempts = [];
  let lose = loseResponses;
  const wrapped = async (url, init) => {
    const attempt = { url: String(url), method: init?.method, key: init?.headers?.["Idempotency-Key"] };
    attempts.push(attempt);
    try {
      const response = await fetch(url, init);
      attempt.status = response.status;
      if (init?.method === "POST" && lose > 0) {
        lose--;
        await response.text(); // the server took it; the client never hears back
        throw new TypeError("fetch failed: connection reset");
      }
      return response;
    } catch (error) {
      attempt.error = String(error);
      throw error;
    }
  };
  return { fetch: wrapped, attempts };
}

async function waitPublishedOnce(baseUrl, slug, body) {
  const published = await waitFor(
    async () => {
      const found = (await publishedComments(baseUrl, slug)).filter((c) => c.body === body);
      return found.length ? found : null;
    },
    { what: `"${body}" to be published` },
  );
  return published;
}

test("a response lost after the server accepted is retried with the same key and posts once", async () => {
  const [{ token }, slug, [node]] = await Promise.all([newUser(), newStream(), nodes()]);
  const { fetch, attempts } = recordingFetch({ loseResponses: 1 });
  const writer = client({ baseUrl: node.http, token, fetch });
  try {
    const accepted = await writer.postComment(slug, "said once");

    const posts = attempts.filter((a) => a.method === "POST");
    assert.equal(posts.length, 2, "sent again after the lost response");
    assert.equal(posts[0].status, 202, "the first attempt was accepted by the server");
    assert.equal(posts[0].key, posts[1].key, "with the same Idempotency-Key");
    const published = await waitPublishedOnce(node.http, slug, "said once");
    assert.equal(published.length, 1, "one comment, not two");
    assert.equal(published[0].id, accepted.id);
    assert.deepEqual(writer.pending(), []);
  } finally {
    writer.close();
  }
});

test("the outbox survives its node's restart and a reload of the client without a double post", async () => {
  const [{ token }, slug, all] = await Promise.all([newUser(), newStream(), nodes()]);
  const storage = memoryStorage(); // what localStorage is to a page: it outlives the client
  const first = recordingFetch();
  const before = client({ baseUrl: all[0].http, token, storage, fetch: first.fetch });
  await killNode(0);
  let second;
  try {
    const posting = before.postComment(slug, "kept through a restart");
    await waitFor(() => first.attempts.filter((a) => a.error).length >= 2, { what: "failed attempts" });
    assert.equal(before.pending().length, 1, "the post waits in the outbox");
    const key = before.pending()[0].key;

    before.close(); // the page goes away while the node is down
    await assert.rejects(posting, (error) => error instanceof ChorusError && error.code === "closed");
    assert.equal(JSON.parse(storage.getItem(`chorus.outbox:${all[0].http}`)).length, 1, "still stored");

    await startNode(0);
    const retried = recordingFetch();
    second = client({ baseUrl: all[0].http, token, storage, fetch: retried.fetch }); // the reloaded page
    const [entry, accepted] = await new Promise((resolve) => second.on("posted", (...args) => resolve(args)));

    assert.equal(entry.key, key);
    assert.ok(first.attempts.every((a) => a.key === key) && retried.attempts.every((a) => a.key === key));
    const published = await waitPublishedOnce(all[0].http, slug, "kept through a restart");
    assert.equal(published.length, 1);
    assert.equal(published[0].id, accepted.id);
    assert.deepEqual(second.pending(), []);
    assert.equal(storage.getItem(`chorus.outbox:${all[0].http}`), null);
  } finally {
    before.close();
    second?.close();
    await startNode(0);
  }
});

test("a post the server refuses (4xx) rejects with its JSON error and leaves the outbox", async () => {
  const [{ token }, slug, [node]] = await Promise.all([newUser(), newStream(), nodes()]);
  const writer = client({ baseUrl: node.http, token });
  const anonymous = client({ baseUrl: node.http });
  try {
    await assert.rejects(writer.postComment(slug, "   "), (error) => {
      assert.ok(error instanceof ChorusError);
      assert.equal(error.status, 400);
      assert.equal(error.code, "invalid");
      assert.ok(error.fields.body.length);
      return true;
    });
    await assert.rejects(writer.postComment("no-such-stream", "x"), (error) => error.status === 404);
    await assert.rejects(anonymous.postComment(slug, "x"), (error) => error.status === 401);
    assert.deepEqual(writer.pending(), []);
    assert.deepEqual(anonymous.pending(), []);
  } finally {
    writer.close();
    anonymous.close();
  }
});

test("getToken is asked again after a 401 and the request goes through", async () => {
  const [{ token }, slug, [node]] = await Promise.all([newUser(), newStream(), nodes()]);
  let asked = 0;
  const writer = client({
    baseUrl: node.http,
    token: "expired-token",
    getToken: async () => {
      asked++;
      return token;
    },
  });
  try {
    const accepted = await writer.postComment(slug, "with a renewed token");
    assert.equal(accepted.status, "pending");
    assert.equal(asked, 1);
  } finally {
    writer.close();
  }
});
