/** Concurrent callers with the same key share one run of the work. */
export class SingleFlight<V> {
  readonly #running = new Map<string, Promise<V>>();

  run(key: string, work: () => Promise<V>): Promise<V> {
    const existing = this.#running.get(key);
    if (existing) return existing;
    const p = work().finally(() => this.#running.delete(key));
    this.#running.set(key, p);
    return p;
  }

  get size(): number {
    return this.#running.size;
  }
}
