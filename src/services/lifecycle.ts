import { UserError } from '../errors.js';

/**
 * The process's life as services see it: long work (exports, retention, scheduled jobs)
 * checks `stopping` between steps and hands its work back — says "interrupted, run again",
 * removes its temporary files, releases its lease — instead of being cut off mid-way at exit.
 */
export class Lifecycle {
  private readonly controller = new AbortController();
  private readonly inFlight = new Set<Promise<unknown>>();

  private drainingSince: number | undefined;

  /** Shutdown began (SIGTERM): readiness answers 503 from now on; work is still accepted. */
  beginDrain(): void {
    this.drainingSince ??= Date.now();
  }

  get draining(): boolean {
    return this.drainingSince !== undefined;
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  get stopping(): boolean {
    return this.controller.signal.aborted;
  }

  /** Tracks a piece of background work so that shutdown can wait for it. */
  track<T>(p: Promise<T>): Promise<T> {
    this.inFlight.add(p);
    const done = () => this.inFlight.delete(p);
    p.then(done, done);
    return p;
  }

  /** Tells every tracked piece of work to hand back. */
  stop(): void {
    this.beginDrain();
    this.controller.abort(new InterruptedError());
  }

  /** Resolves when all tracked work has ended (successfully or not). */
  async drained(): Promise<void> {
    while (this.inFlight.size) await Promise.allSettled([...this.inFlight]);
  }

  /** Throws InterruptedError once shutdown began; call between steps of long work. */
  check(): void {
    if (this.stopping) throw new InterruptedError();
  }
}

/**
 * Work stopped because Warden is shutting down. A UserError: the person who asked for it
 * reads exactly this, not an apology for a bug.
 */
export class InterruptedError extends UserError {
  constructor() {
    super('Interrupted: Warden is restarting. What was already done is recorded in the audit log; run it again in a minute.');
  }
}
