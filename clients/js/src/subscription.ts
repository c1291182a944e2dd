// One stream subscription: join at the tail, then a socket that resumes after every disconnect.

import { Emitter } from "./emitter.js";
import { ChorusError } from "./errors.js";
import { backoff, TokenBucket } from "./timing.js";
import type {
  Comment,
  Epoch,
  EventFrame,
  Gap,
  Position,
  ReactionCounts,
  State,
  SubscribeOptions,
  WebSocketLike,
} from "./types.js";

/** What a subscription needs from its client (kept narrow so the two can be read apart). */
export interface Host {
  readonly options: {
    backoff: { min: number; max: number };
    pingInterval: number;
    watchdog: number;
    tail: number;
  };
  tail(stream: string, count: number): Promise<{ results: Comment[]; position: Position }>;
  socket(stream: string, params: Record<string, string>): Promise<WebSocketLike>;
  tokenRejected(): Promise<boolean>;
  forget(subscription: Subscription): void;
}

export interface SubscriptionEvents {
  /** A published comment: from the tail read on joining (`tail: true`) or live. */
  comment: (comment: Comment, meta: { seq: number; tail: boolean }) => unknown;
  /** Every sequenced event (comments, edits, deletes, reactions on comments, …), once, in order. */
  event: (frame: EventFrame) => unknown;
  /** Live reaction counts of the stream (a snapshot: latest wins). */
  counts: (snapshot: ReactionCounts) => void;
  /** Approximate number of viewers. */
  presence: (viewers: number) => void;
  state: (state: State) => void;
  /** Recovery was impossible (the stream's history was reset): what followed `from` is lost. */
  gap: (gap: Gap) => void;
  /** The position moved (after each applied event, and after the tail on joining). */
  position: (position: Position) => void;
  /** A report of one of the user's sagas on this stream changed. */
  saga: (report: any) => void;
  /** An error frame from the server, or the reason the subscription closed for good. */
  error: (error: ChorusError) => void;
}

type Item =
  | { kind: "event"; frame: EventFrame }
  | { kind: "tail"; comment: Comment }
  | { kind: "at"; position: Position }
  | { kind: "gap"; gap: Gap };

const OPEN = 1;
const CLOSE_CLIENT = 4000; // a close the client decided on (watchdog, resync timeout, history reset)
const RESYNC_TIMEOUT = 5000;
const EARLY_MAX = 1000; // out-of-order events held while a resync fills the hole
const GRANT_DELAY = 50; // small credit grants wait this long to be sent together

export class Subscription extends Emitter<SubscriptionEvents> {
  readonly stream: string;
  state: State = "connecting";
  /** The last event applied (handlers called), in the stream's epoch. */
  position: Position;
  /** Sockets opened, duplicates dropped: for monitoring and tests. */
  readonly stats = { connections: 0, duplicates: 0, resyncs: 0 };

  private readonly host: Host;
  private readonly credit?: number;
  private readonly tailCount: number;
  private epoch?: Epoch;
  private received: number; // the resume point: every event up to it was received, in order
  private needTail: boolean;
  private gapFrom?: Position;
  private closed = false;
  private generation = 0; // bumped by every (re)connect and close: stale async steps see it and stop
  private attempt = 0;
  private ws?: WebSocketLike;
  private lastError?: ChorusError;
  private draining = false; // the server said its node is draining: the close that follows is a hand-over
  private countsVersion = -1;

  private queue: Item[] = [];
  private dispatching = false;
  private unconsumed = 0; // events received and not yet consumed (credit)
  private grantable = 0; // consumed and not yet granted back to the server

  private early = new Map<number, EventFrame>();
  private resyncing = false;
  private bucket = new TokenBucket(10, 20);
  private outgoing: string[] = [];
  private lastActivity = 0;
  private pinged = false;

  private retryTimer?: ReturnType<typeof setTimeout>;
  private watchdogTimer?: ReturnType<typeof setTimeout>;
  private flushTimer?: ReturnType<typeof setTimeout>;
  private resyncTimer?: ReturnType<typeof setTimeout>;

  constructor(host: Host, stream: string, options: SubscribeOptions) {
    super();
    this.host = host;
    this.stream = stream;
    this.credit = options.credit;
    this.tailCount = options.tail ?? host.options.tail;
    this.epoch = options.epoch;
    this.received = options.after ?? 0;
    this.needTail = options.after === undefined;
    this.position = this.at(this.received);
    if (this.credit !== undefined && !(Number.isInteger(this.credit) && this.credit >= 1 && this.credit <= 1e6)) {
      throw new RangeError("credit must be an integer from 1 to 1000000");
    }
  }

  /** Stop for good: closes the socket and leaves no timer or listener behind. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.generation++;
    this.dropSocket(1000, "client closed");
    clearTimeout(this.retryTimer);
    this.queue = [];
    this.setState("closed");
    this.removeAllListeners();
    this.host.forget(this);
  }

  /** Send a reaction tap on this socket if it is live and the pace allows; false if dropped. */
  tap(kind: string): boolean {
    return this.state === "live" && this.send({ type: "reaction", kind }, true);
  }

  /** Reconnect now instead of waiting for the backoff (the network is back). */
  wake(): void {
    if (!this.closed && this.retryTimer !== undefined) {
      clearTimeout(this.retryTimer);
      this.retryTimer = undefined;
      void this.connect();
    }
  }

  // --- connecting -----------------------------------------------------------------------------

  /** @internal Started by the client. */
  async connect(): Promise<void> {
    const generation = ++this.generation;
    this.retryTimer = undefined;
    this.setState("connecting");
    try {
      if (this.needTail) await this.joinTail(generation);
      if (generation !== this.generation) return;
      const params: Record<string, string> = { after: String(this.received) };
      if (this.epoch !== undefined) params.epoch = String(this.epoch);
      if (this.credit !== undefined) {
        // The new socket's credit is the room left in the window; what is consumed from now on is
        // granted to it once it is live.
        params.credit = String(Math.max(0, this.credit - this.unconsumed));
        this.grantable = 0;
      }
      const ws = await this.host.socket(this.stream, params);
      if (generation !== this.generation) {
        ws.close(1000);
        return;
      }
      this.open(ws);
    } catch (error) {
      if (generation !== this.generation) return;
      if (error instanceof ChorusError && !error.retryable) this.fail(error);
      else this.retry();
    }
  }

  /** Read the latest comments and the position they are current at; the socket resumes there. */
  private async joinTail(generation: number): Promise<void> {
    const { results, position } = await this.host.tail(this.stream, this.tailCount);
    if (generation !== this.generation) return;
    if (this.gapFrom) {
      this.queue.push({ kind: "gap", gap: { from: this.gapFrom, to: position } });
      this.gapFrom = undefined;
    }
    for (const comment of results) this.queue.push({ kind: "tail", comment });
    this.queue.push({ kind: "at", position });
    this.epoch = position.epoch;
    this.received = position.seq;
    this.needTail = false;
    this.pump();
  }

  private open(ws: WebSocketLike): void {
    this.ws = ws;
    this.stats.connections++;
    this.countsVersion = -1;
    this.touch();
    ws.onmessage = (message) => {
      if (this.ws !== ws) return;
      this.touch();
      this.onFrame(message.data);
    };
    ws.onclose = (event) => {
      if (this.ws === ws) this.onClose(event.code);
    };
    ws.onerror = () => {}; // a close event follows
  }

  private retry(delay?: number): void {
    if (this.closed) return;
    this.setState("offline");
    const { min, max } = this.host.options.backoff;
    this.retryTimer = setTimeout(() => void this.connect(), delay ?? backoff(this.attempt++, min, max));
  }

  /** Drop this socket and connect again (after the backoff). */
  private restart(): void {
    this.dropSocket(CLOSE_CLIENT, "reconnecting");
    this.retry();
  }

  private dropSocket(code: number, reason: string): void {
    const ws = this.ws;
    this.ws = undefined;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try {
        if (ws.readyState <= OPEN) ws.close(code, reason);
      } catch {
        // Already closing.
      }
    }
    for (const timer of [this.watchdogTimer, this.flushTimer, this.resyncTimer]) clearTimeout(timer);
    this.watchdogTimer = this.flushTimer = this.resyncTimer = undefined;
    this.outgoing = [];
    this.early.clear();
    this.resyncing = false;
  }

  private onClose(code: number): void {
    this.dropSocket(1000, "");
    if (this.closed) return;
    const error = this.lastError;
    const draining = this.draining;
    this.lastError = undefined;
    this.draining = false;
    switch (code) {
      case 4404: // no such stream
        return this.fail(new ChorusError(0, error?.code ?? "stream_not_found", error?.message ?? "no such stream", { closeCode: code }));
      case 4400: // bad parameters: a resume point ahead of the stream means its history was reset
        this.setState("offline");
        void this.checkReset(error ?? new ChorusError(0, "bad_request", "bad connection parameters", { closeCode: code }));
        return;
      case 4401: // the token was refused: get a fresh one, or stop
        void this.host.tokenRejected().then((renewed) => {
          if (renewed) this.retry();
          else this.fail(new ChorusError(0, "not_authenticated", "the server refused the token", { closeCode: code }));
        });
        return;
      case 4503:
        this.attempt = 0;
        // The node is draining (a `draining` frame came first): nothing is wrong, so reconnect at
        // once through discovery, only spread out by a random share of `min` so that a node's
        // clients do not all arrive together. Otherwise the node could not reach its database or
        // Redis: as for 4408.
        if (draining) return this.retry(Math.random() * this.host.options.backoff.min);
        break;
      case 4408: // too far behind: resume from the last event received (the frame before said which)
        this.attempt = 0;
        break;
      case 4429: // we sent too much: wait long
        this.attempt = Math.max(this.attempt, 6);
        break;
    }
    this.retry();
  }

  private async checkReset(error: ChorusError): Promise<void> {
    const generation = this.generation;
    try {
      const { position } = await this.host.tail(this.stream, 0);
      if (generation !== this.generation) return;
      if (this.received > position.seq) return this.historyReset();
      this.fail(error);
    } catch (failure) {
      if (generation !== this.generation) return;
      if (failure instanceof ChorusError && !failure.retryable) this.fail(failure);
      else this.retry(); // the check is made again on the next refusal
    }
  }

  /** The stream's history was reset: report the gap and join again at the new tail. */
  private historyReset(): void {
    this.dropSocket(CLOSE_CLIENT, "history reset");
    this.gapFrom = this.at(this.received);
    this.epoch = undefined;
    this.needTail = true;
    void this.connect();
  }

  private fail(error: ChorusError): void {
    this.emit("error", error);
    this.close();
  }

  // --- receiving ------------------------------------------------------------------------------

  private onFrame(data: unknown): void {
    let frame: any;
    try {
      frame = JSON.parse(String(data));
    } catch {
      return;
    }
    if (!frame || typeof frame !== "object") return;
    if (frame.epoch !== undefined && frame.type !== "error") {
      if (this.epoch !== undefined && frame.epoch !== this.epoch) return this.historyReset();
      this.epoch = frame.epoch;
    }
    switch (frame.type) {
      case "hello":
        this.attempt = 0;
        this.setState("live");
        this.flush();
        break;
      case "event":
        this.onEvent(frame);
        break;
      case "presence":
        this.emit("presence", frame.viewers);
        break;
      case "reactions":
        // Versions only grow on a stream; keep the latest when frames cross on a reconnect.
        if (typeof frame.version !== "number" || frame.version > this.countsVersion) {
          if (typeof frame.version === "number") this.countsVersion = frame.version;
          this.emit("counts", { counts: frame.counts, version: frame.version });
        }
        break;
      case "saga":
        this.emit("saga", frame.saga);
        break;
      case "error":
        this.onError(frame);
        break;
      case "draining":
        // Every event up to `last_seq` arrived before this frame: resuming from what was received
        // is resuming from there. The close (4503) follows.
        this.draining = true;
        break;
    }
  }

  private onError(frame: any): void {
    const error = new ChorusError(0, String(frame.code ?? "error"), String(frame.message ?? ""), { body: frame });
    this.lastError = error;
    if (frame.code === "history_reset") return this.historyReset();
    // Before hello, an error is the reason for the close that follows (reported with the close).
    // too_far_behind (then 4408) carries the last event sent: every event up to it arrived before
    // this frame, so resuming from what was received is resuming from last_seq.
    if (this.state !== "live" || frame.last_seq !== undefined) return;
    // A refused frame may have been a credit grant: without it the server could hold events for
    // good. A fresh socket starts with the right credit.
    const refused = frame.code === "rate_limited" || frame.code === "overloaded" || frame.code === "unavailable";
    if (refused && this.credit !== undefined) return this.restart();
    this.emit("error", error);
  }

  private onEvent(frame: EventFrame): void {
    const seq = frame.seq;
    if (typeof seq !== "number") return;
    if (seq <= this.received) {
      this.stats.duplicates++;
      return;
    }
    if (seq > this.received + 1) {
      // A hole: hold this event and ask for the range again; reconnect if that does not fill it.
      this.early.set(seq, frame);
      if (this.early.size > EARLY_MAX) return this.restart();
      if (!this.resyncing) {
        this.resyncing = true;
        this.stats.resyncs++;
        this.send({ type: "resync", after: this.received });
        this.resyncTimer = setTimeout(() => this.restart(), RESYNC_TIMEOUT);
      }
      return;
    }
    this.accept(frame);
    for (let next = this.early.get(this.received + 1); next; next = this.early.get(this.received + 1)) {
      this.early.delete(next.seq);
      this.accept(next);
    }
    if (this.resyncing) {
      for (const held of this.early.keys()) if (held <= this.received) this.early.delete(held);
      if (!this.early.size) {
        this.resyncing = false;
        clearTimeout(this.resyncTimer);
        this.resyncTimer = undefined;
      }
    }
    this.pump();
  }

  private accept(frame: EventFrame): void {
    this.received = frame.seq;
    if (this.credit !== undefined) this.unconsumed++;
    this.queue.push({ kind: "event", frame });
  }

  /** Hand queued items to the application in order; with credit, one at a time as each is consumed. */
  private pump(): void {
    if (this.dispatching) return;
    this.dispatching = true;
    while (this.queue.length && !this.closed) {
      const item = this.queue.shift() as Item;
      const pending = this.dispatch(item);
      if (pending.length && this.credit !== undefined) {
        Promise.allSettled(pending).then(() => {
          if (this.closed) return;
          this.consumed(item);
          this.dispatching = false;
          this.pump();
        });
        return;
      }
      this.consumed(item);
    }
    this.dispatching = false;
  }

  private dispatch(item: Item): PromiseLike<unknown>[] {
    switch (item.kind) {
      case "gap":
        return this.emit("gap", item.gap);
      case "tail":
        return this.emit("comment", item.comment, { seq: item.comment.seq as number, tail: true });
      case "at":
        this.position = item.position;
        return this.emit("position", this.position);
      case "event": {
        const { frame } = item;
        const pending = this.emit("event", frame);
        if (frame.event === "comment.created") {
          pending.push(...this.emit("comment", frame.data, { seq: frame.seq, tail: false }));
        }
        this.position = this.at(frame.seq);
        return pending.concat(this.emit("position", this.position));
      }
    }
  }

  /** An event left the window: grant its slot back (to whichever socket is current). */
  private consumed(item: Item): void {
    if (item.kind !== "event" || this.credit === undefined) return;
    this.unconsumed--;
    this.grantable++;
    if (this.grantable >= Math.ceil(this.credit / 2)) this.flush();
    else if (this.flushTimer === undefined) this.flushTimer = setTimeout(() => this.flush(), GRANT_DELAY);
  }

  // --- sending --------------------------------------------------------------------------------

  /** Send a frame within the client's pace; a volatile one is dropped rather than queued. */
  private send(frame: object, volatile = false): boolean {
    const ws = this.ws;
    if (!ws || ws.readyState !== OPEN) return false;
    if (this.outgoing.length || !this.bucket.take()) {
      if (volatile) return false;
      this.outgoing.push(JSON.stringify(frame));
      this.flushLater();
      return true;
    }
    ws.send(JSON.stringify(frame));
    return true;
  }

  /** Send queued frames and the credit owed, as far as the pace allows. */
  private flush(): void {
    clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    const ws = this.ws;
    if (!ws || ws.readyState !== OPEN || this.state !== "live") return;
    while (this.outgoing.length && this.bucket.take()) ws.send(this.outgoing.shift() as string);
    if (this.grantable && !this.outgoing.length && this.bucket.take()) {
      ws.send(JSON.stringify({ type: "credit", n: Math.min(this.grantable, 1e6) }));
      this.grantable = 0;
    }
    if (this.outgoing.length || this.grantable) this.flushLater();
  }

  private flushLater(): void {
    if (this.flushTimer === undefined) this.flushTimer = setTimeout(() => this.flush(), Math.max(this.bucket.wait(), 1));
  }

  // --- liveness -------------------------------------------------------------------------------

  private touch(): void {
    this.lastActivity = Date.now();
    this.pinged = false;
    if (this.watchdogTimer === undefined) this.watch();
  }

  /** Ping a quiet server; reconnect when it stays silent (a frozen node, a dead path). */
  private watch(): void {
    this.watchdogTimer = undefined;
    if (!this.ws) return;
    const { pingInterval, watchdog } = this.host.options;
    const idle = Date.now() - this.lastActivity;
    if (idle >= watchdog) return this.restart();
    if (idle >= pingInterval && !this.pinged && this.state === "live") {
      this.pinged = true;
      this.send({ type: "ping" });
    }
    const next = idle < pingInterval ? pingInterval - idle : watchdog - idle;
    this.watchdogTimer = setTimeout(() => this.watch(), next);
  }

  private setState(state: State): void {
    if (this.state === state) return;
    this.state = state;
    this.emit("state", state);
  }

  private at(seq: number): Position {
    return this.epoch === undefined ? { seq } : { epoch: this.epoch, seq };
  }
}
