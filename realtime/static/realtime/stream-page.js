// The live page of a stream, on @chorus/client (window.Chorus, loaded just before this script).
// User text only ever reaches the page through textContent: nothing from a user is parsed as HTML.
(() => {
  "use strict";
  const config = JSON.parse(document.getElementById("chorus-page").textContent);
  const EMOJI = { heart: "❤️", fire: "🔥", clap: "👏", laugh: "😂", wow: "😮" };
  const STATES = { connecting: "connecting…", live: "live", offline: "offline, reconnecting…", closed: "disconnected" };
  const FINAL = ["succeeded", "compensated", "compensation_failed"];
  const MAX_SHOWN = 500;
  const MAX_FLOATS = 30; // at once on screen, however fast the counts grow

  const $ = (id) => document.getElementById(id);
  const list = $("comments");
  const pendingList = $("pending");
  const statusEl = $("status");
  const note = $("note");
  const floats = $("floats");
  const sagasEl = $("sagas");

  /** An element with a class and text (textContent: never parsed as HTML). */
  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }
  const emoji = (kind) => EMOJI[kind] || kind;
  const say = (text) => { note.textContent = text; };

  function setState(state) {
    statusEl.dataset.state = state;
    statusEl.textContent = STATES[state] || state;
  }

  if (!window.Chorus) {
    setState("closed");
    statusEl.textContent = "client not built (run scripts/js.sh)";
    return;
  }

  const client = new Chorus.ChorusClient();
  const sub = client.subscribe(config.stream, { tail: config.tail });
  window.chorusPage = { client, subscription: sub }; // for debugging and tests

  // --- connection state, viewers, gaps ---------------------------------------------------------

  sub.on("state", setState);
  sub.on("presence", (n) => { $("viewers").textContent = `${n} watching`; });
  sub.on("gap", () => {
    // The stream's history was reset: what we show may be gone; the new tail follows.
    comments.clear();
    list.replaceChildren();
    say("The stream was reset; showing its latest comments.");
  });
  sub.on("error", (error) => {
    if (error.code === "auth_required") say("Log in to react.");
    else if (error.closeCode) say(`Disconnected: ${error.message}`);
    else if (error.code === "rate_limited") say("Slow down a little.");
  });

  // --- comments --------------------------------------------------------------------------------

  /** id -> { li, comment, counts: {kind: n}, mine: Set(kinds) } */
  const comments = new Map();
  const published = new Set(); // ids seen on the stream (a post may come back before its 202)

  function nearBottom() {
    return list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  }

  function showComment(comment, seq) {
    published.add(comment.id);
    settlePending(comment.id);
    const known = comments.get(comment.id);
    if (known) return updateComment(known, comment);
    const stick = nearBottom();
    const initial = config.reactions[comment.id] || { counts: {}, mine: [] };
    const entry = { comment, counts: { ...initial.counts }, mine: new Set(initial.mine), li: el("li", "comment") };
    entry.li.dataset.id = comment.id;
    entry.li.dataset.seq = String(seq);
    comments.set(comment.id, entry);
    drawComment(entry);
    list.append(entry.li);
    while (list.children.length > MAX_SHOWN) {
      comments.delete(list.firstElementChild.dataset.id);
      list.firstElementChild.remove();
    }
    if (stick) list.scrollTop = list.scrollHeight;
  }

  function updateComment(entry, comment) {
    if (comment.version < entry.comment.version && comment.status === entry.comment.status) return;
    entry.comment = comment;
    if (!entry.editing) drawComment(entry);
  }

  function drawComment(entry) {
    const { comment, li } = entry;
    const deleted = comment.status === "deleted";
    li.classList.toggle("deleted", deleted);
    const head = el("div", "head");
    head.append(el("span", "author", comment.author));
    if (comment.version > 1 && !deleted) head.append(el("span", "edited", "edited"));
    head.append(el("span", "seq", `#${comment.seq}`));
    const body = el("p", "body", deleted ? "comment deleted" : comment.body);
    li.replaceChildren(head, body);
    if (deleted) return;
    const actions = el("div", "actions");
    for (const kind of config.kinds) actions.append(reactButton(entry, kind));
    if (config.user !== null && comment.author === config.user) {
      const tools = el("span", "mine-tools");
      const edit = el("button", "edit", "Edit");
      edit.type = "button";
      edit.addEventListener("click", () => startEdit(entry));
      const remove = el("button", "delete", "Delete");
      remove.type = "button";
      remove.addEventListener("click", () => confirmDelete(entry, remove));
      tools.append(edit, remove);
      actions.append(tools);
    }
    li.append(actions);
  }

  function reactButton(entry, kind) {
    const button = el("button", "react");
    button.type = "button";
    button.dataset.kind = kind;
    button.append(el("span", "emoji", emoji(kind)), el("span", "n"));
    paintReaction(entry, button);
    if (config.user === null) button.disabled = true;
    button.addEventListener("click", async () => {
      const mine = entry.mine.has(kind);
      button.disabled = true;
      try {
        if (mine) {
          await client.unreact(entry.comment.id, kind);
          entry.mine.delete(kind);
        } else {
          const answer = await client.react(entry.comment.id, kind);
          entry.mine.add(kind);
          entry.counts[kind] = answer.count;
        }
        paintReactions(entry);
      } catch (error) {
        say(`Could not react: ${error.message}`);
      } finally {
        button.disabled = false;
      }
    });
    return button;
  }

  function paintReaction(entry, button) {
    const kind = button.dataset.kind;
    const count = entry.counts[kind] || 0;
    button.querySelector(".n").textContent = count ? String(count) : "";
    button.setAttribute("aria-pressed", String(entry.mine.has(kind)));
    button.setAttribute("aria-label", `${kind}: ${count}`);
  }

  function paintReactions(entry) {
    for (const button of entry.li.querySelectorAll(".react")) paintReaction(entry, button);
  }

  function onReaction(data, added) {
    const entry = comments.get(data.comment);
    if (!entry) return;
    entry.counts[data.kind] = data.count;
    if (data.user === config.user) {
      if (added) entry.mine.add(data.kind);
      else entry.mine.delete(data.kind);
    }
    paintReactions(entry);
  }

  function startEdit(entry) {
    entry.editing = true;
    const form = el("form", "edit-form");
    const input = el("input");
    input.value = entry.comment.body;
    input.maxLength = 2000;
    input.required = true;
    input.setAttribute("aria-label", "Edit your comment");
    const save = el("button", "save", "Save");
    save.type = "submit";
    const cancel = el("button", "cancel", "Cancel");
    cancel.type = "button";
    const stop = () => {
      entry.editing = false;
      drawComment(entry);
      entry.li.querySelector(".edit")?.focus();
    };
    cancel.addEventListener("click", stop);
    input.addEventListener("keydown", (event) => { if (event.key === "Escape") stop(); });
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      save.disabled = true;
      try {
        entry.comment = await client.editComment(entry.comment.id, input.value.trim(), { version: entry.comment.version });
        say("Saved.");
        stop();
      } catch (error) {
        save.disabled = false;
        if (error.code === "precondition_failed") {
          entry.comment = await client.getComment(entry.comment.id).catch(() => entry.comment);
          say("The comment changed meanwhile; check it and save again.");
        } else {
          say(`Could not save: ${error.message}`);
        }
      }
    });
    form.append(input, save, cancel);
    entry.li.querySelector(".body").replaceWith(form);
    entry.li.querySelector(".actions")?.remove();
    input.focus();
  }

  function confirmDelete(entry, button) {
    if (button.dataset.armed !== "1") {
      // Two steps, so a stray click or key press does not delete.
      button.dataset.armed = "1";
      button.textContent = "Really delete?";
      setTimeout(() => {
        if (button.isConnected) { button.dataset.armed = ""; button.textContent = "Delete"; }
      }, 4000);
      return;
    }
    button.disabled = true;
    client.deleteComment(entry.comment.id).then(
      () => { updateComment(entry, { ...entry.comment, status: "deleted", body: "" }); say("Deleted."); },
      (error) => { button.disabled = false; say(`Could not delete: ${error.message}`); },
    );
  }

  sub.on("comment", (comment, { seq }) => showComment(comment, seq));
  sub.on("event", (frame) => {
    const data = frame.data;
    switch (frame.event) {
      case "comment.edited":
      case "comment.deleted": {
        const entry = comments.get(data.id);
        if (entry) updateComment(entry, data);
        break;
      }
      case "reaction.added":
        onReaction(data, true);
        break;
      case "reaction.removed":
        onReaction(data, false);
        break;
    }
  });

  // --- your posts, pending until published -------------------------------------------------------

  const pendingByKey = new Map(); // outbox key -> li
  const pendingById = new Map(); // accepted comment id -> li

  function showPending(entry) {
    if (pendingByKey.has(entry.key) || entry.payload.kind) return; // sagas have their own card
    const li = el("li", "comment");
    li.dataset.key = entry.key;
    const head = el("div", "head");
    head.append(el("span", "author", config.user || "you"), el("span", "state", "sending…"));
    li.append(head, el("p", "body", String(entry.payload.body)));
    pendingByKey.set(entry.key, li);
    pendingList.append(li);
  }

  function settlePending(commentId) {
    const li = pendingById.get(commentId);
    if (!li) return;
    pendingById.delete(commentId);
    pendingByKey.delete(li.dataset.key);
    li.remove();
  }

  client.on("posted", (entry, accepted) => {
    const li = pendingByKey.get(entry.key);
    if (!li) return;
    if (published.has(accepted.id)) {
      pendingByKey.delete(entry.key);
      li.remove();
      return;
    }
    li.querySelector(".state").textContent = "pending";
    li.dataset.id = accepted.id;
    pendingById.set(accepted.id, li);
  });

  client.on("failed", (entry, error) => {
    const li = pendingByKey.get(entry.key);
    if (!li) return;
    pendingByKey.delete(entry.key);
    li.classList.add("failed");
    li.querySelector(".state").textContent = `not posted: ${error.message}`;
    const dismiss = el("button", "dismiss", "Dismiss");
    dismiss.type = "button";
    dismiss.addEventListener("click", () => li.remove());
    li.append(dismiss);
  });

  // Posts an earlier page left in the outbox are being sent again: show them as pending too.
  for (const entry of client.pending()) showPending(entry);

  // --- taps: floating reactions and live counts --------------------------------------------------

  const tapCounts = {};
  const ownTaps = {}; // taps of this page not yet seen in the counts (already floated)
  let floated = 0;

  function float(kind) {
    floats.dataset.floated = String(++floated); // tests count what floated
    if (floats.childElementCount >= MAX_FLOATS) return;
    const item = el("span", "float", emoji(kind));
    item.style.left = `${Math.round(Math.random() * 60)}%`;
    item.addEventListener("animationend", () => item.remove());
    setTimeout(() => item.remove(), 3000);
    floats.append(item);
  }

  for (const kind of config.kinds) {
    const button = el("button", "tap");
    button.type = "button";
    button.dataset.kind = kind;
    button.setAttribute("aria-label", `Send ${kind}`);
    button.append(el("span", "emoji", emoji(kind)), el("span", "count", "0"));
    if (config.user === null) {
      button.disabled = true;
      button.title = "Log in to react";
    }
    button.addEventListener("click", async () => {
      if (await client.tap(config.stream, kind).catch(() => false)) {
        ownTaps[kind] = (ownTaps[kind] || 0) + 1;
        float(kind);
      }
    });
    $("taps").append(button);
  }

  sub.on("counts", ({ counts }) => {
    for (const [kind, count] of Object.entries(counts)) {
      const before = tapCounts[kind];
      tapCounts[kind] = count;
      const button = document.querySelector(`#taps .tap[data-kind="${CSS.escape(kind)}"]`);
      if (button) {
        button.querySelector(".count").textContent = String(count);
        button.setAttribute("aria-label", `Send ${kind} (${count} so far)`);
      }
      if (before === undefined) continue; // the first snapshot: history, not news
      let news = count - before;
      const own = Math.min(ownTaps[kind] || 0, Math.max(news, 0));
      ownTaps[kind] = (ownTaps[kind] || 0) - own;
      news -= own;
      for (let i = 0; i < Math.min(news, 8); i++) float(kind);
    }
  });

  // --- posting, and "comment and react" with its outcome ----------------------------------------

  const form = $("post-form");
  if (form) {
    const input = $("body");
    const kindSelect = $("react-kind");
    for (const kind of config.kinds) {
      const option = el("option", "", `${emoji(kind)} ${kind}`);
      option.value = kind;
      kindSelect.append(option);
    }

    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const text = input.value.trim();
      if (!text) return;
      const sent = client.postComment(config.stream, text);
      for (const entry of client.pending()) showPending(entry);
      input.value = "";
      say("");
      sent.catch((error) => say(`Not posted: ${error.message}`));
    });

    $("send-react").addEventListener("click", () => {
      const text = input.value.trim();
      if (!text) {
        input.reportValidity();
        return;
      }
      input.value = "";
      const card = sagaCard(null, text, kindSelect.value);
      client.commentAndReact(config.stream, text, kindSelect.value).then(
        (report) => { sagaCards.set(report.id, card); drawSaga(card, report); watchSaga(report.id); },
        (error) => {
          card.el.querySelector(".summary").textContent = `Not sent: ${error.message}`;
          addDismiss(card);
        },
      );
    });
  }

  const sagaCards = new Map(); // saga id -> { el, report }

  function sagaCard(id, text, kind) {
    const card = { el: el("article", "saga"), report: null };
    card.el.append(el("h2", "", `${emoji(kind)} “${text}”`), el("ol"), el("p", "summary", "sending…"));
    sagasEl.append(card.el);
    if (id) sagaCards.set(id, card);
    return card;
  }

  function addDismiss(card) {
    if (card.el.querySelector(".dismiss")) return;
    const dismiss = el("button", "dismiss", "Dismiss");
    dismiss.type = "button";
    dismiss.addEventListener("click", () => {
      card.el.remove();
      if (card.report) sagaCards.delete(card.report.id);
    });
    card.el.append(dismiss);
  }

  function stepText(step) {
    const what = step.description;
    switch (step.state) {
      case "succeeded": return [`✓ ${what}`, "ok"];
      case "pending": return [`… ${what}: waiting`, ""];
      case "running": return [`… ${what}: running`, ""];
      case "failed": return [`✗ ${what}: failed`, "bad"];
      case "compensating": return [`↺ ${what}: being undone`, "bad"];
      case "compensated": return [step.error ? `✗ ${what}: failed, undone` : `↺ ${what}: undone`, "bad"];
      default: return [`✗ ${what}: ${step.state.replace(/_/g, " ")}`, "bad"];
    }
  }

  function drawSaga(card, report) {
    if (card.report && card.report.updated_at > report.updated_at && card.report.generation >= report.generation) return;
    card.report = report;
    card.el.dataset.state = report.state;
    const steps = card.el.querySelector("ol");
    steps.replaceChildren(
      ...report.steps.map((step) => {
        const [text, tone] = stepText(step);
        const li = el("li", tone, text);
        li.dataset.step = step.name;
        li.dataset.state = step.state;
        return li;
      }),
    );
    card.el.querySelector(".summary").textContent = report.summary;
    card.el.querySelector(".retry")?.remove();
    if (report.retryable) {
      const retry = el("button", "retry", "Retry what failed");
      retry.type = "button";
      retry.addEventListener("click", () => retrySaga(card, retry));
      card.el.querySelector(".summary").after(retry);
    }
    if (FINAL.includes(report.state)) addDismiss(card);
  }

  async function sagaRequest(method, path) {
    const headers = { Accept: "application/json" };
    if (method !== "GET") headers["X-CSRFToken"] = cookie("csrftoken");
    const response = await fetch(path, { method, headers, credentials: "same-origin" });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(data.detail || `HTTP ${response.status}`);
    return data;
  }

  async function retrySaga(card, button) {
    button.disabled = true;
    try {
      drawSaga(card, await sagaRequest("POST", `/api/v1/sagas/${encodeURIComponent(card.report.id)}/retry`));
      watchSaga(card.report.id);
    } catch (error) {
      button.disabled = false;
      say(`Could not retry: ${error.message}`);
    }
  }

  /** The socket pushes saga changes; while it is not live, or a frame was missed, read the report. */
  function watchSaga(id) {
    const check = async () => {
      const card = sagaCards.get(id);
      if (!card || (card.report && FINAL.includes(card.report.state))) return;
      if (sub.state !== "live" || Date.now() - (card.seen || 0) > 2500) {
        await sagaRequest("GET", `/api/v1/sagas/${encodeURIComponent(id)}`).then((r) => drawSaga(card, r), () => {});
      }
      setTimeout(check, 2000);
    };
    setTimeout(check, 2000);
  }

  sub.on("saga", (report) => {
    const card = sagaCards.get(report.id);
    if (!card) return; // a saga started on another page
    card.seen = Date.now();
    drawSaga(card, report);
  });

  function cookie(name) {
    for (const part of document.cookie.split(";")) {
      const [key, ...value] = part.trim().split("=");
      if (key === name) return decodeURIComponent(value.join("="));
    }
    return "";
  }
})();
