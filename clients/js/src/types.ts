// The shapes Chorus sends and the options the client takes (docs/API.md is the reference).

/** A stream's epoch: changes when its log is reset or restored; compared only for equality. */
export type Epoch = number;

/** Where a subscriber is in a stream: the last event applied, in the stream's current epoch. */
export interface Position {
  epoch?: Epoch;
  seq: number;
}

export interface Comment {
  id: string;
  stream: string;
  seq: number | null;
  author: string;
  body: string;
  parent: string | null;
  status: "pending" | "published" | "deleted";
  version: number;
  created_at: string;
}

/** A sequenced event as the socket delivers it. */
export interface EventFrame {
  type: "event";
  seq: number;
  id: string;
  event: string;
  data: any;
  epoch?: Epoch;
}

/** The answer to an accepted write (202): the work takes effect exactly once. */
export interface Accepted {
  id: string;
  status: string;
  status_url: string;
  [field: string]: unknown;
}

export interface ReactionCounts {
  counts: Record<string, number>;
  version?: number;
}

export interface Gap {
  /** The position the subscriber had reached. */
  from: Position;
  /** The position it continues from, after the tail read at the new head. */
  to: Position;
}

export type State = "connecting" | "live" | "offline" | "closed";

/** The part of the WHATWG WebSocket the client uses (browsers, Node 22+, undici, `ws`). */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: any) => void) | null;
  onmessage: ((event: { data: any }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: ((event: any) => void) | null;
}

export type WebSocketConstructor = new (url: string) => WebSocketLike;

/** Synchronous key-value storage with the Web Storage API (localStorage fits). */
export interface StorageLike {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

export interface ClientOptions {
  /** Root of the Chorus HTTP API, e.g. `https://chorus.example.com`. Default: the page's origin. */
  baseUrl?: string;
  /** An API token (`Authorization: Token …`). Without one, browsers use the session cookie. */
  token?: string;
  /** Returns a fresh token: called when there is none yet, and again after a 401 or a 4401 close. */
  getToken?: () => string | Promise<string>;
  fetch?: typeof fetch;
  WebSocket?: WebSocketConstructor;
  /** Where the outbox of unsent posts lives. Default: localStorage in browsers, memory elsewhere. */
  storage?: StorageLike;
  /** Reconnect delays in ms (full jitter): from `min`, doubling, up to `max`. Default 500 to 20000. */
  backoff?: { min?: number; max?: number };
  /** Send a ping after this many ms without any frame from the server. Default 10000. */
  pingInterval?: number;
  /** Reconnect after this many ms without any frame from the server. Default 25000. */
  watchdog?: number;
  /** Timeout of each HTTP request in ms. Default 10000. */
  timeout?: number;
  /** Comments read on joining a stream at its tail. Default 50. */
  tail?: number;
  /** Cookie holding Django's CSRF token, sent as X-CSRFToken with session auth. Default "csrftoken". */
  csrfCookieName?: string;
  /** Send posts left in the outbox by an earlier page or process on start. Default true. */
  resumeOutbox?: boolean;
}

export interface SubscribeOptions {
  /** Resume after this sequence number (replaying the log). Without it, join at the tail. */
  after?: number;
  /** The epoch `after` belongs to (from a saved position). */
  epoch?: Epoch;
  /**
   * Flow control: at most this many events delivered and not yet consumed. An event is consumed
   * when its handlers have returned and the promises they returned have settled; events are then
   * dispatched one at a time. Without it the server sends as fast as it can.
   */
  credit?: number;
  /** Comments read when joining at the tail (overrides the client's default). */
  tail?: number;
}

export interface PostOptions {
  /** Reply to this comment. */
  parent?: string;
}

/** A post waiting in the outbox (kept across reloads in `storage`). */
export interface OutboxEntry {
  key: string;
  stream: string;
  path: string;
  payload: Record<string, unknown>;
  created: number;
}
