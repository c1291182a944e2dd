// A minimal typed event emitter whose emit reports the promises handlers returned (credit uses them).

type Handler = (...args: any[]) => unknown;

export class Emitter<E extends { [K in keyof E]: Handler }> {
  private listeners = new Map<keyof E, Set<Handler>>();

  /** Add a handler; returns a function that removes it. */
  on<K extends keyof E>(type: K, handler: E[K]): () => void {
    let set = this.listeners.get(type);
    if (!set) this.listeners.set(type, (set = new Set()));
    set.add(handler);
    return () => this.off(type, handler);
  }

  off<K extends keyof E>(type: K, handler: E[K]): void {
    const set = this.listeners.get(type);
    if (set && set.delete(handler) && !set.size) this.listeners.delete(type);
  }

  /** Call every handler; a throwing handler is reported and does not stop the others. */
  protected emit<K extends keyof E>(type: K, ...args: Parameters<E[K]>): PromiseLike<unknown>[] {
    const pending: PromiseLike<unknown>[] = [];
    const set = this.listeners.get(type);
    if (!set) return pending;
    for (const handler of Array.from(set)) {
      try {
        const result = handler(...args) as any;
        if (result && typeof result.then === "function") pending.push(result);
      } catch (error) {
        report(error);
      }
    }
    return pending;
  }

  protected removeAllListeners(): void {
    this.listeners.clear();
  }
}

export function report(error: unknown): void {
  const reportError = (globalThis as any).reportError;
  if (typeof reportError === "function") reportError(error);
  else console.error(error);
}
