/**
 * Every failure the client reports: an HTTP error with the API's JSON body, a network failure or
 * timeout (`status` 0), a socket closed for good (`closeCode`), or the client closed.
 */
export class ChorusError extends Error {
  /** HTTP status; 0 when there was no HTTP answer. */
  readonly status: number;
  /**
   * The API's error code (`invalid`, `not_found`, `throttled`, …), a socket error frame's code
   * (`stream_not_found`, `bad_request`, …), or `network`, `timeout`, `closed`.
   */
  readonly code: string;
  /** The WebSocket close code, for a subscription closed by the server for good. */
  readonly closeCode?: number;
  /** Per-field messages of a validation error (`{"body": ["…"]}`). */
  readonly fields?: Record<string, string[]>;
  /** Seconds to wait before retrying, from `Retry-After`. */
  readonly retryAfter?: number;
  /** The parsed response body, if any. */
  readonly body?: unknown;

  constructor(
    status: number,
    code: string,
    message: string,
    extra: { fields?: Record<string, string[]>; retryAfter?: number; body?: unknown; closeCode?: number } = {},
  ) {
    super(message);
    this.name = "ChorusError";
    this.status = status;
    this.code = code;
    this.fields = extra.fields;
    this.retryAfter = extra.retryAfter;
    this.body = extra.body;
    this.closeCode = extra.closeCode;
  }

  /** Worth sending again unchanged: the network, a timeout, throttling or an unavailable server. */
  get retryable(): boolean {
    if (this.status === 0) return this.code === "network" || this.code === "timeout";
    return this.status === 408 || this.status === 429 || this.status >= 500;
  }
}

export function httpError(status: number, body: any, retryAfter: string | null): ChorusError {
  const seconds = retryAfter !== null && /^\d+$/.test(retryAfter.trim()) ? Number(retryAfter) : undefined;
  const code = body && typeof body.code === "string" ? body.code : `http_${status}`;
  const detail = body && typeof body.detail === "string" ? body.detail : `HTTP ${status}`;
  return new ChorusError(status, code, detail, { fields: body?.fields, retryAfter: seconds, body });
}
