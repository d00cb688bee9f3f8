/**
 * Runs a look now and then: every intervalMs, and whenever woken. Never two at once: wake-ups during a look fold into
 * one more look after it. A failed look is handed to onError and the loop goes on.
 */
export class WakeLoop {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private again = false;
  private stopped = false;
  private unsubscribe: (() => void)[] = [];

  constructor(
    private readonly look: () => Promise<void>,
    private readonly intervalMs: number,
    private readonly onError: (e: Error) => void,
  ) {}

  /** Starts looking; each of `wakers` is given the wake-up and returns its unsubscribe. */
  start(wakers: ((wake: () => void) => () => void)[] = []): void {
    this.timer = setInterval(() => this.wake(), this.intervalMs);
    this.timer.unref();
    this.unsubscribe = wakers.map((w) => w(() => this.wake()));
    this.wake();
  }

  wake(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = this.look()
      .catch((e) => this.onError(e as Error))
      .finally(() => {
        this.running = undefined;
        if (this.again) {
          this.again = false;
          this.wake();
        }
      });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    for (const u of this.unsubscribe) u();
    await this.running;
  }
}
