// The Chorus client: HTTP calls, the outbox of posts, and the factory of subscriptions.

import { Emitter } from "./emitter.js";
import { ChorusError, httpError } from "./errors.js";
import { defaultStorage, Outbox } from "./outbox.js";
import { Subscription, type Host } from "./subscription.js";
import { backoff } from "./timing.js";
import type {
  Accepted,
  ClientOptions,
  Comment,
  OutboxEntry,
  PostOptions,
  SubscribeOptions,
  WebSocketConstructor,
} from "./types.js";

export interface ClientEvents {
  /** A post from the outbox was accepted (also for posts left by an earlier page or process). */
  posted: (entry: OutboxEntry, accepted: Accepted) => void;
  /** A post was refused for good (a 4xx) and left the outbox. */
  failed: (entry: OutboxEntry, error: ChorusError) => void;
}

interface RequestOptions {
  json?: unknown;
  headers?: Record<string, string>;
  auth?: boolean;
}

interface Waiter {
  resolve: (accepted: Accepted) => void;
  reject: (error: ChorusError) => void;
}

export class ChorusClient extends Emitter<ClientEvents> {
  /** @internal Read by subscriptions. */
  readonly options: Host["options"] & { timeout: number; csrfCookieName: string };
  private readonly baseUrl: string;
  private readonly fetcher: typeof fetch;
  private readonly WebSocketImpl?: WebSocketConstructor;
  private readonly getToken?: () => string | Promise<string>;
  private token?: string;
  private renewing?: Promise<boolean>;
  private readonly outbox: Outbox;
  private readonly host: Host;
  private readonly waiters = new Map<string, Waiter>();
  private readonly subscriptions = new Set<Subscription>();
  private readonly requests = new Set<AbortController>();
  private closed = false;
  private sending = false;
  private sendAttempt = 0;
  private sleep?: { timer: ReturnType<typeof setTimeout>; wake: () => void };
  private readonly onOnline = (): void => this.wake();

  constructor(options: ClientOptions = {}) {
    super();
    const origin = (globalThis as any).location?.origin as string | undefined;
    const baseUrl = options.baseUrl ?? origin;
    if (!baseUrl) throw new TypeError("ChorusClient needs a baseUrl outside a browser page");
    this.baseUrl = baseUrl.replace(/\/+$/, "");
    const fetcher = options.fetch ?? globalThis.fetch;
    if (!fetcher) throw new TypeError("no fetch: pass { fetch }");
    this.fetcher = options.fetch ? fetcher : fetcher.bind(globalThis);
    this.WebSocketImpl = options.WebSocket ?? (globalThis as any).WebSocket;
    this.token = options.token;
    this.getToken = options.getToken;
    this.options = {
      backoff: { min: options.backoff?.min ?? 500, max: options.backoff?.max ?? 20000 },
      pingInterval: options.pingInterval ?? 10000,
      watchdog: options.watchdog ?? 25000,
      tail: options.tail ?? 50,
      timeout: options.timeout ?? 10000,
      csrfCookieName: options.csrfCookieName ?? "csrftoken",
    };
    this.host = this.makeHost();
    this.outbox = new Outbox(options.storage ?? defaultStorage(), `chorus.outbox:${this.baseUrl}`);
    const target = globalThis as any;
    if (typeof target.addEventListener === "function" && typeof target.document !== "undefined") {
      target.addEventListener("online", this.onOnline);
    }
    if (options.resumeOutbox !== false && this.outbox.entries().length) void this.drain();
  }

  // --- subscriptions --------------------------------------------------------------------------

  /**
   * Follow a stream. Without `after` it joins at the tail: the latest comments arrive first (as
   * `comment` with `tail: true`), then every later event. With `after` it resumes from there.
   */
  subscribe(stream: string, options: SubscribeOptions = {}): Subscription {
    this.ensureOpen();
    if (!this.WebSocketImpl) throw new TypeError("no WebSocket: pass { WebSocket } (Node 20: run with --experimental-websocket, or use the ws package)");
    const subscription = new Subscription(this.host, stream, options);
    this.subscriptions.add(subscription);
    void subscription.connect();
    return subscription;
  }

  // --- writes ---------------------------------------------------------------------------------

  /**
   * Post a comment; resolves to the server's acceptance (`{id, status: "pending", status_url}`)
   * once it took the post. The post is kept in the outbox under a fresh Idempotency-Key and sent
   * again, with the same key, while the network or the server fails: it is never lost and never
   * doubled. A 4xx refuses it for good: the promise rejects with the server's error.
   */
  postComment(stream: string, body: string, options: PostOptions = {}): Promise<Accepted> {
    const payload: Record<string, unknown> = { body };
    if (options.parent) payload.parent = options.parent;
    return this.enqueue(stream, `/api/v1/streams/${encodeURIComponent(stream)}/comments`, payload);
  }

  /** Post a comment and add your reaction to it, as one saga (docs/API.md); outboxed like a post. */
  commentAndReact(stream: string, body: string, kind: string): Promise<Accepted> {
    return this.enqueue(stream, `/api/v1/streams/${encodeURIComponent(stream)}/comment-and-react`, { body, kind });
  }

  /** Posts not yet accepted, oldest first (to show them as pending, also after a reload). */
  pending(): OutboxEntry[] {
    return this.outbox.entries();
  }

  /**
   * A volatile reaction tap: sent on a live subscription's socket when there is one, else over
   * HTTP; dropped, never queued, when offline or over the pace. Resolves to whether it was sent.
   */
  async tap(stream: string, kind: string): Promise<boolean> {
    for (const subscription of this.subscriptions) {
      // A live socket carries the tap, or drops it when over the pace: not HTTP instead.
      if (subscription.stream === stream && subscription.state === "live") return subscription.tap(kind);
    }
    if ((globalThis as any).navigator?.onLine === false) return false;
    try {
      await this.request("POST", `/api/v1/streams/${encodeURIComponent(stream)}/reactions`, { json: { kind } });
      return true;
    } catch (error) {
      if (error instanceof ChorusError && (error.retryable || error.code === "closed")) return false;
      throw error;
    }
  }

  /** Add your reaction of `kind` to a comment (idempotent). */
  async react(commentId: string, kind: string): Promise<{ comment: string; kind: string; reacted: boolean; count: number }> {
    return this.request("PUT", `/api/v1/comments/${encodeURIComponent(commentId)}/reactions/${encodeURIComponent(kind)}`);
  }

  /** Remove your reaction of `kind` from a comment (idempotent). */
  async unreact(commentId: string, kind: string): Promise<void> {
    await this.request("DELETE", `/api/v1/comments/${encodeURIComponent(commentId)}/reactions/${encodeURIComponent(kind)}`);
  }

  /** One comment, pending or published; its `version` is what `editComment` needs. */
  getComment(id: string): Promise<Comment> {
    return this.request("GET", `/api/v1/comments/${encodeURIComponent(id)}`);
  }

  /**
   * Edit a comment if it is still at `version` (If-Match). A comment changed since rejects with
   * status 412 (`precondition_failed`): read it again and decide.
   */
  editComment(id: string, body: string, options: { version: number }): Promise<Comment> {
    return this.request("PATCH", `/api/v1/comments/${encodeURIComponent(id)}`, {
      json: { body },
      headers: { "If-Match": `"${options.version}"` },
    });
  }

  /** Delete a comment (idempotent). */
  async deleteComment(id: string): Promise<void> {
    await this.request("DELETE", `/api/v1/comments/${encodeURIComponent(id)}`);
  }

  /**
   * Stop everything: subscriptions close, requests are aborted, no timer or listener is left.
   * Posts still in the outbox stay in storage (their promises reject with code `closed`); a client
   * created later on the same storage sends them.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const subscription of Array.from(this.subscriptions)) subscription.close();
    for (const controller of this.requests) controller.abort();
    this.requests.clear();
    if (this.sleep) {
      clearTimeout(this.sleep.timer);
      this.sleep.wake();
    }
    const target = globalThis as any;
    if (typeof target.removeEventListener === "function") target.removeEventListener("online", this.onOnline);
    const error = new ChorusError(0, "closed", "the client was closed; the post stays in the outbox");
    for (const waiter of this.waiters.values()) waiter.reject(error);
    this.waiters.clear();
    this.removeAllListeners();
  }

  // --- the outbox -----------------------------------------------------------------------------

  private enqueue(stream: string, path: string, payload: Record<string, unknown>): Promise<Accepted> {
    this.ensureOpen();
    const entry: OutboxEntry = { key: uuid(), stream, path, payload, created: Date.now() };
    this.outbox.add(entry); // stored before the first attempt: a reload mid-request keeps it
    const promise = new Promise<Accepted>((resolve, reject) => this.waiters.set(entry.key, { resolve, reject }));
    void this.drain();
    return promise;
  }

  /** Send the outbox in order, one post at a time, until it is empty or the client closes. */
  private async drain(): Promise<void> {
    if (this.sending) return;
    this.sending = true;
    try {
      for (let entry = this.outbox.entries()[0]; entry && !this.closed; entry = this.outbox.entries()[0]) {
        try {
          const accepted = await this.request<Accepted>("POST", entry.path, {
            json: entry.payload,
            headers: { "Idempotency-Key": entry.key },
          });
          this.sendAttempt = 0;
          this.settle(entry, accepted);
        } catch (failure) {
          const error = failure instanceof ChorusError ? failure : new ChorusError(0, "network", String(failure));
          if (this.closed) break;
          if (!error.retryable) {
            this.settle(entry, undefined, error);
            continue;
          }
          const { min, max } = this.options.backoff;
          const delay = error.retryAfter !== undefined ? error.retryAfter * 1000 : backoff(this.sendAttempt++, min, max);
          await this.pause(delay);
        }
      }
    } finally {
      this.sending = false;
    }
  }

  private settle(entry: OutboxEntry, accepted?: Accepted, error?: ChorusError): void {
    this.outbox.remove(entry.key);
    const waiter = this.waiters.get(entry.key);
    this.waiters.delete(entry.key);
    if (accepted) {
      waiter?.resolve(accepted);
      this.emit("posted", entry, accepted);
    } else {
      waiter?.reject(error as ChorusError);
      this.emit("failed", entry, error as ChorusError);
    }
  }

  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const wake = (): void => {
        clearTimeout(timer);
        this.sleep = undefined;
        resolve();
      };
      const timer = setTimeout(wake, ms);
      this.sleep = { timer, wake };
    });
  }

  /** The network is back: retry the outbox and reconnect subscriptions now. */
  private wake(): void {
    this.sendAttempt = 0;
    this.sleep?.wake();
    for (const subscription of this.subscriptions) subscription.wake();
  }

  // --- HTTP -----------------------------------------------------------------------------------

  /** One API call: JSON in and out, the token or the session (with CSRF), a 401 renews the token. */
  private async request<T>(method: string, path: string, options: RequestOptions = {}, renewed = false): Promise<T> {
    this.ensureOpen();
    const headers: Record<string, string> = { Accept: "application/json", ...options.headers };
    if (options.json !== undefined) headers["Content-Type"] = "application/json";
    const token = options.auth === false ? undefined : await this.currentToken();
    if (token) headers.Authorization = `Token ${token}`;
    else if (method !== "GET") {
      const csrf = cookie(this.options.csrfCookieName);
      if (csrf) headers["X-CSRFToken"] = csrf;
    }
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), this.options.timeout);
    this.requests.add(controller);
    let status: number;
    let text: string;
    let retryAfter: string | null;
    try {
      const response = await this.fetcher(this.baseUrl + path, {
        method,
        headers,
        body: options.json === undefined ? undefined : JSON.stringify(options.json),
        credentials: "same-origin",
        signal: controller.signal,
      });
      status = response.status;
      retryAfter = response.headers.get("Retry-After");
      text = await response.text();
    } catch (error) {
      if (this.closed) throw new ChorusError(0, "closed", "the client was closed");
      throw new ChorusError(0, controller.signal.aborted ? "timeout" : "network", String(error));
    } finally {
      clearTimeout(timer);
      this.requests.delete(controller);
    }
    let data: any = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = null;
    }
    if (status === 401 && this.getToken && options.auth !== false && !renewed) {
      if (await this.renewToken()) return this.request<T>(method, path, options, true);
    }
    if (status >= 400) throw httpError(status, data, retryAfter);
    return data as T;
  }

  private async currentToken(): Promise<string | undefined> {
    if (this.token === undefined && this.getToken) await this.renewToken();
    return this.token;
  }

  /** Ask `getToken` for a fresh token (once for concurrent callers); false if there is none. */
  private renewToken(): Promise<boolean> {
    if (!this.getToken) return Promise.resolve(false);
    if (!this.renewing) {
      const getToken = this.getToken;
      this.renewing = (async () => {
        try {
          this.token = await getToken();
          return Boolean(this.token);
        } finally {
          this.renewing = undefined;
        }
      })();
    }
    return this.renewing;
  }

  private ensureOpen(): void {
    if (this.closed) throw new ChorusError(0, "closed", "the client was closed");
  }

  /** What subscriptions need from the client. */
  private makeHost(): Host {
    return {
      options: this.options,
      tail: (stream, count) =>
        this.request("GET", `/api/v1/streams/${encodeURIComponent(stream)}/comments?tail=${count}`, { auth: false }),
      socket: async (stream, params) => {
        const url = new URL(await this.discover(stream));
        for (const [name, value] of Object.entries(params)) url.searchParams.set(name, value);
        // A browser sends the session cookie itself; a token can only travel in the URL.
        const token = await this.currentToken();
        if (token) url.searchParams.set("token", token);
        return new (this.WebSocketImpl as WebSocketConstructor)(url.toString());
      },
      tokenRejected: () => this.renewToken(),
      forget: (subscription) => void this.subscriptions.delete(subscription),
    };
  }

  /** The node to connect to, from discovery; the API's own host when discovery cannot answer. */
  private async discover(stream: string): Promise<string> {
    try {
      const answer = await this.request<{ url?: string }>(
        "GET",
        `/api/v1/realtime/connect?stream=${encodeURIComponent(stream)}`,
        { auth: false },
      );
      if (answer && typeof answer.url === "string") return answer.url;
    } catch (error) {
      if (error instanceof ChorusError && error.code === "closed") throw error;
    }
    return `${this.baseUrl.replace(/^http/, "ws")}/ws/streams/${encodeURIComponent(stream)}/`;
  }
}

function cookie(name: string): string | undefined {
  const jar = (globalThis as any).document?.cookie as string | undefined;
  if (!jar) return undefined;
  for (const part of jar.split(";")) {
    const [key, ...value] = part.trim().split("=");
    if (key === name) return decodeURIComponent(value.join("="));
  }
  return undefined;
}

/** An RFC 4122 version 4 id (crypto.randomUUID exists only in secure contexts). */
function uuid(): string {
  const crypto = (globalThis as any).crypto;
  if (typeof crypto?.randomUUID === "function") return crypto.randomUUID();
  const bytes: Uint8Array = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
