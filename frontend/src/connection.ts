// Whether the server can be reached. A failed request marks it down. While
// it is down, `GET api/server` is retried with a growing delay (1 s up to
// 10 s), and views reload their data once it responds again.

type Listener = () => void;

const MIN_RETRY_MS = 1000;
const MAX_RETRY_MS = 10000;

class ConnectionMonitor {
  down = false;
  /** Increases each time the server comes back, so views can reload on it. */
  generation = 0;
  nextRetryAt = 0;
  private delay = MIN_RETRY_MS;
  private timer: number | undefined;
  private listeners = new Set<Listener>();
  private probeUrl = "";

  configure(probeUrl: string): void {
    this.probeUrl = probeUrl;
  }

  subscribe(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  reportDown(): void {
    if (this.down) return;
    this.down = true;
    this.delay = MIN_RETRY_MS;
    this.schedule();
    this.notify();
  }

  reportUp(): void {
    if (!this.down) return;
    this.down = false;
    this.generation += 1;
    window.clearTimeout(this.timer);
    this.notify();
  }

  /**
   * Probe the server after a stream lost its connection: EventSource retries
   * quietly, so without this a page that only streams would not notice.
   */
  check(): void {
    if (this.down) return;
    fetch(this.probeUrl, { credentials: "same-origin", cache: "no-store" }).then(
      () => this.reportUp(),
      () => this.reportDown(),
    );
  }

  /** Probe the server now instead of waiting for the next retry. */
  retryNow(): void {
    window.clearTimeout(this.timer);
    void this.probe();
  }

  private schedule(): void {
    window.clearTimeout(this.timer);
    this.nextRetryAt = Date.now() + this.delay;
    this.timer = window.setTimeout(() => void this.probe(), this.delay);
  }

  private async probe(): Promise<void> {
    try {
      const response = await fetch(this.probeUrl, { credentials: "same-origin", cache: "no-store" });
      if (response.ok) {
        this.reportUp();
        return;
      }
    } catch {
      // Still unreachable: try again later.
    }
    this.delay = Math.min(this.delay * 2, MAX_RETRY_MS);
    this.schedule();
    this.notify();
  }

  private notify(): void {
    for (const listener of this.listeners) listener();
  }
}

export const connection = new ConnectionMonitor();
