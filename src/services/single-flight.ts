/**
 * Runs a pass at most once at a time in this process. A call made while a pass runs does
 * not start a second one: it asks for one more pass after the current one and gets the
 * same promise. Watchers use it so that a burst of NOTIFYs becomes one or two scans.
 */
export class SingleFlight {
  private running: Promise<number> | null = null;
  private again = false;

  constructor(
    private readonly pass: () => Promise<number>,
    /** Checked before each extra pass (e.g. stop when closing). */
    private readonly mayContinue: () => boolean = () => true,
  ) {}

  run(): Promise<number> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    const run = (async () => {
      let total = 0;
      do {
        this.again = false;
        total += await this.pass();
      } while (this.again && this.mayContinue());
      return total;
    })().finally(() => {
      this.running = null;
    });
    this.running = run;
    return run;
  }

  /** Resolves when the pass in progress (if any) has finished. */
  async idle(): Promise<void> {
    await this.running?.catch(() => {});
  }
}
