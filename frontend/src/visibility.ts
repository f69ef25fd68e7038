// Whether this page may hold live streams open.
//
// The server speaks HTTP/1.1, and Chromium allows 6 connections per host,
// shared by all tabs. Each open EventSource keeps one of them, so a few
// dashboard tabs could starve a new one that cannot even load its page. So a
// page hidden (another tab in front, window minimised) for
// HIDDEN_RELEASE_SECONDS closes its streams, and reopens them once it is shown
// again. The owners of the streams then catch up on what they missed.

/** Seconds a page stays hidden before it closes its live streams. */
export const HIDDEN_RELEASE_SECONDS = 5;

type Listener = (active: boolean) => void;

class PageActivity {
  /** False while the page is released: hidden for long enough that its streams are closed. */
  active = true;
  private timer: number | undefined;
  private listeners = new Set<Listener>();

  constructor() {
    document.addEventListener("visibilitychange", () => this.onVisibilityChange());
    if (document.visibilityState === "hidden") this.onVisibilityChange();
  }

  /** Call `listener` with false when the page releases its streams, and with true when it takes them back. */
  subscribe(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private onVisibilityChange(): void {
    window.clearTimeout(this.timer);
    this.timer = undefined;
    if (document.visibilityState === "hidden") {
      if (this.active) this.timer = window.setTimeout(() => this.set(false), HIDDEN_RELEASE_SECONDS * 1000);
      return;
    }
    this.set(true);
  }

  private set(active: boolean): void {
    if (this.active === active) return;
    this.active = active;
    for (const listener of [...this.listeners]) listener(active);
  }
}

export const pageActivity = new PageActivity();
