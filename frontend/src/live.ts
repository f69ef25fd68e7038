// Server-Sent Event streams: one run's changes, and the store's.
//
// EventSource reconnects by itself after a dropped connection and sends the
// id of the last event it got as `Last-Event-ID`, so the server resumes the
// stream exactly where it stopped. It gives up only when the server responds
// with an error status, so then the stream is reopened here after a delay.

import { apiUrl, runUrl, withQuery } from "./api";
import { connection } from "./connection";
import type { MetricRow, RunStatus } from "./types";

export type StreamState = "connecting" | "open" | "reconnecting" | "ended";

export interface RunStreamHandlers {
  onSnapshot?(data: { status: RunStatus; stale: boolean; last_step: number | null }): void;
  onMetrics?(data: { rows: MetricRow[]; last_step: number | null }): void;
  onLog?(data: { file: string; lines: string[] }): void;
  onStatus?(data: { status: RunStatus; previous: RunStatus; finished_at: string | null }): void;
  onRunUpdated?(data: unknown): void;
  onArtifact?(data: unknown): void;
  onDeleted?(): void;
  onState?(state: StreamState): void;
  /** Called when the server rejected the stream; return false to stop reopening it. */
  onRejected?(): Promise<boolean>;
}

const REOPEN_DELAY_MS = 3000;

function parse(event: MessageEvent): any {
  try {
    return JSON.parse(event.data);
  } catch {
    return null;
  }
}

/** The live stream of one run, from the step after `sinceStep` on. */
export class RunStream {
  private source: EventSource | null = null;
  private reopenTimer: number | undefined;
  private closed = false;
  private lastStep: number | null;

  constructor(
    private readonly experiment: string,
    private readonly run: string,
    sinceStep: number | null,
    private readonly handlers: RunStreamHandlers,
  ) {
    this.lastStep = sinceStep;
    this.open();
  }

  private open(): void {
    const url = withQuery(runUrl(this.experiment, this.run, "live"), {
      since_step: this.lastStep === null ? -1 : this.lastStep,
    });
    const source = new EventSource(url, { withCredentials: true });
    this.source = source;
    this.handlers.onState?.("connecting");

    source.onopen = () => this.handlers.onState?.("open");
    source.onerror = () => {
      if (this.closed) return;
      if (source.readyState === EventSource.CONNECTING) {
        this.handlers.onState?.("reconnecting");
        connection.check();
        return;
      }
      // The server responded with an error status, after which EventSource does not retry.
      source.close();
      this.handlers.onState?.("reconnecting");
      void this.afterRejection();
    };

    source.addEventListener("Snapshot", (event) => this.handlers.onSnapshot?.(parse(event as MessageEvent)));
    source.addEventListener("MetricsUpdated", (event) => {
      const data = parse(event as MessageEvent);
      if (!data) return;
      if (typeof data.last_step === "number") this.lastStep = data.last_step;
      this.handlers.onMetrics?.(data);
    });
    source.addEventListener("LogMessage", (event) => this.handlers.onLog?.(parse(event as MessageEvent)));
    source.addEventListener("StatusChanged", (event) => this.handlers.onStatus?.(parse(event as MessageEvent)));
    source.addEventListener("RunUpdated", (event) => this.handlers.onRunUpdated?.(parse(event as MessageEvent)));
    source.addEventListener("ArtifactAdded", (event) => this.handlers.onArtifact?.(parse(event as MessageEvent)));
    source.addEventListener("RunDeleted", () => {
      this.close();
      this.handlers.onDeleted?.();
    });
  }

  private async afterRejection(): Promise<void> {
    const keepTrying = this.handlers.onRejected ? await this.handlers.onRejected() : true;
    if (this.closed || !keepTrying) {
      this.close();
      return;
    }
    this.reopenTimer = window.setTimeout(() => {
      if (!this.closed) this.open();
    }, REOPEN_DELAY_MS);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    window.clearTimeout(this.reopenTimer);
    this.source?.close();
    this.source = null;
    this.handlers.onState?.("ended");
  }
}

export interface StoreEvent {
  type: "ExperimentCreated" | "ExperimentDeleted" | "RunCreated" | "RunDeleted" | "StatusChanged";
  experiment: string;
  run?: string;
  status?: RunStatus;
  previous?: RunStatus;
  /** When the page received the event (ms since the epoch). */
  received: number;
}

const STORE_EVENTS: StoreEvent["type"][] = [
  "ExperimentCreated",
  "ExperimentDeleted",
  "RunCreated",
  "RunDeleted",
  "StatusChanged",
];

type StoreListener = (event: StoreEvent) => void;

/** The store-wide stream, opened while at least one view listens to it. */
class StoreStream {
  private source: EventSource | null = null;
  private listeners = new Set<StoreListener>();
  private reopenTimer: number | undefined;

  subscribe(listener: StoreListener): () => void {
    this.listeners.add(listener);
    if (!this.source) this.open();
    return () => {
      this.listeners.delete(listener);
      if (this.listeners.size === 0) this.close();
    };
  }

  private open(): void {
    const source = new EventSource(apiUrl("live"), { withCredentials: true });
    this.source = source;
    source.onerror = () => {
      connection.check();
      if (source.readyState !== EventSource.CLOSED) return;
      source.close();
      this.source = null;
      window.clearTimeout(this.reopenTimer);
      this.reopenTimer = window.setTimeout(() => {
        if (this.listeners.size && !this.source) this.open();
      }, REOPEN_DELAY_MS);
    };
    for (const type of STORE_EVENTS) {
      source.addEventListener(type, (event) => {
        const data = parse(event as MessageEvent);
        if (!data) return;
        const storeEvent: StoreEvent = { ...data, type, received: Date.now() };
        for (const listener of this.listeners) listener(storeEvent);
      });
    }
  }

  private close(): void {
    window.clearTimeout(this.reopenTimer);
    this.source?.close();
    this.source = null;
  }
}

export const storeStream = new StoreStream();
