/**
 * In-process single flight: concurrent `run(key, fn)` calls with the same key share one promise, so one
 * indexing runs per layer digest in a process no matter how many requests ask for it. The entry is removed
 * when the promise settles (a failure is not cached: the next caller retries). The shared work does not
 * belong to any caller, so it finishes even if every caller has gone away (STYLE.md §5).
 */
import { publish } from './events.js';

export class SingleFlight {
  readonly #inflight = new Map<string, Promise<unknown>>();

  run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const running = this.#inflight.get(key);
    if (running) {
      publish({ op: 'flight', tier: 'flight', key, detail: 'joined' });
      return running as Promise<T>;
    }
    const p = (async () => fn())().finally(() => this.#inflight.delete(key));
    this.#inflight.set(key, p);
    return p;
  }

  /** Keys in flight right now. */
  get size(): number {
    return this.#inflight.size;
  }
}
