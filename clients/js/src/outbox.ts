// The outbox: writes not yet accepted by the server, kept in storage so a reload does not lose them.

import type { OutboxEntry, StorageLike } from "./types.js";

/** Storage that lives as long as the process (the default outside browsers). */
export function memoryStorage(): StorageLike {
  const items = new Map<string, string>();
  return {
    getItem: (key) => (items.has(key) ? (items.get(key) as string) : null),
    setItem: (key, value) => void items.set(key, value),
    removeItem: (key) => void items.delete(key),
  };
}

/** localStorage where there is one that works (not in Node, not when blocked), else memory. */
export function defaultStorage(): StorageLike {
  try {
    const storage = (globalThis as any).localStorage as StorageLike | undefined;
    if (storage) {
      const probe = "chorus.probe";
      storage.setItem(probe, "1");
      storage.removeItem(probe);
      return storage;
    }
  } catch {
    // Blocked (private mode, sandboxed frame, quota): fall through.
  }
  return memoryStorage();
}

/**
 * Entries are read from and written to storage on every change, never cached: another page of
 * the same origin may have added or removed entries since (a second tab, or the page before a
 * reload). Two pages sending the same entry is harmless: it carries its Idempotency-Key.
 */
export class Outbox {
  private fallback: StorageLike | null = null;

  constructor(
    private readonly storage: StorageLike,
    private readonly name: string,
  ) {}

  entries(): OutboxEntry[] {
    try {
      const raw = this.store().getItem(this.name);
      const parsed = raw ? JSON.parse(raw) : [];
      return Array.isArray(parsed) ? parsed : [];
    } catch {
      return [];
    }
  }

  add(entry: OutboxEntry): void {
    this.write([...this.entries().filter((e) => e.key !== entry.key), entry]);
  }

  remove(key: string): void {
    this.write(this.entries().filter((e) => e.key !== key));
  }

  private write(entries: OutboxEntry[]): void {
    const store = this.store();
    try {
      if (entries.length) store.setItem(this.name, JSON.stringify(entries));
      else store.removeItem(this.name);
    } catch {
      // Storage refused (quota): keep the outbox in memory for this page rather than lose it.
      this.fallback = memoryStorage();
      this.fallback.setItem(this.name, JSON.stringify(entries));
    }
  }

  private store(): StorageLike {
    return this.fallback ?? this.storage;
  }
}
