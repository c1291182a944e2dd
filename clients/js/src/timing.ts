// Reconnect delays and the pace of outgoing socket frames.

/** Full-jitter exponential backoff: `min` plus a random share of `min * 2^attempt`, capped at `max`. */
export function backoff(attempt: number, min: number, max: number): number {
  const ceiling = Math.min(max, min * 2 ** Math.min(attempt, 30));
  return Math.min(max, min + Math.random() * ceiling);
}

/**
 * A token bucket for the frames a socket sends: the server drops frames over its inbound limit
 * (20 a second, bursts of 40, by default), and a dropped credit frame would stall the stream.
 */
export class TokenBucket {
  private tokens: number;
  private at = Date.now();

  constructor(
    private readonly rate: number,
    private readonly burst: number,
  ) {
    this.tokens = burst;
  }

  take(): boolean {
    this.refill();
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }

  /** Milliseconds until the next token. */
  wait(): number {
    this.refill();
    return this.tokens >= 1 ? 0 : Math.ceil(((1 - this.tokens) / this.rate) * 1000);
  }

  private refill(): void {
    const now = Date.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.at) / 1000) * this.rate);
    this.at = now;
  }
}
