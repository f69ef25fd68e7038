// Server-Sent Event streams: one run's changes, and the store's.
//
// EventSource reconnects by itself after a dropped connection and sends the
// id of the last event it got as `Last-Event-ID`, so the server resumes the
// stream exactly where it stopped. It gives up only when the server responds
// with an error status, so then the stream is reopened here after a delay.
// A page hidden for a while closes its streams (see visibility.ts). A new
// EventSource cannot send `Last-Event-ID`, so a reopened run stream passes the
// id it last got as `last_event_id` instead, and the server replays the rows,
// log lines, histograms and media after it. A stream with no id yet starts
// from the step before the last one its owner loaded (`since_step`), so the
// row of that last step comes again with any value merged into it since.

import { apiUrl, runUrl, withQuery } from "./api";
import { connection } from "./connection";
import type { MediaEntry, MetricRow, RunStatus } from "./types";
import { pageActivity } from "./visibility";

export type StreamState = "connecting" | "open" | "reconnecting" | "ended";

/**
 * The way a stream opened by a new EventSource continues an earlier one.
 * `"exact"`: it resumed from the last event id, so only the edits and
 * artifacts of the time between are missing. `"from-step"`: it started from
 * a metric step, so log lines, histograms and media are missing too.
 * `"none"`: the first connection, or one of EventSource's own
 * reconnections, which send `Last-Event-ID` and miss nothing.
 */
export type Resumed = "none" | "exact" | "from-step";

/** The start of a run stream: after the event with `lastEventId` when set, else after `sinceStep`. */
export interface StreamStart {
  sinceStep: number | null;
  lastEventId: string | null;
}

export interface RunStreamHandlers {
  /** The first event of every connection. */
  onSnapshot?(data: { status: RunStatus; stale: boolean; last_step: number | null }, resumed: Resumed): void;
  onMetrics?(data: { rows: MetricRow[]; last_step: number | null }): void;
  /** Rows already received, sent again with the values of a later row of the same step merged in. */
  onMerged?(data: { rows: MetricRow[] }): void;
  onLog?(data: { file: string; lines: string[] }): void;
  onStatus?(data: { status: RunStatus; previous: RunStatus; finished_at: string | null }): void;
  onRunUpdated?(data: unknown): void;
  onArtifact?(data: unknown): void;
  onHistograms?(data: { tags: string[]; last_step: number | null }): void;
  onMedia?(data: MediaEntry): void;
  /** New system metric rows were written (the event carries them too, as `rows`). */
  onSystem?(): void;
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

/** The live stream of one run, from `start` on. */
export class RunStream {
  /** The id of the last event received, to resume from when the stream is opened anew. */
  lastEventId: string | null;
  private source: EventSource | null = null;
  private reopenTimer: number | undefined;
  private closed = false;
  private lastStep: number | null;
  private resumed: Resumed;

  constructor(
    private readonly experiment: string,
    private readonly run: string,
    start: StreamStart,
    private readonly handlers: RunStreamHandlers,
  ) {
    this.lastStep = start.sinceStep;
    this.lastEventId = start.lastEventId;
    this.resumed = "none";
    this.open();
  }

  private open(): void {
    let query: Record<string, string | number>;
    // The step whose rows the owner has and the stream sends again, merged.
    let overlap: number | null = null;
    if (this.lastEventId !== null) {
      query = { last_event_id: this.lastEventId };
    } else if (this.lastStep === null || this.lastStep <= 0) {
      query = { since_step: this.lastStep ?? -1 };
    } else {
      query = { since_step: this.lastStep - 1 };
      overlap = this.lastStep;
    }
    let snapshots = 0;
    const source = new EventSource(withQuery(runUrl(this.experiment, this.run, "live"), query), { withCredentials: true });
    this.source = source;
    let resumed = this.resumed;
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

    /** Listen to one event type and keep each event's id. `handle` gets the parsed data. */
    const on = (type: string, handle: (data: any) => void) =>
      source.addEventListener(type, (event) => {
        const message = event as MessageEvent;
        if (message.lastEventId) this.lastEventId = message.lastEventId;
        handle(parse(message));
      });

    on("Snapshot", (data) => {
      // A second Snapshot follows EventSource's own reconnection, which resumes from its id.
      snapshots += 1;
      if (snapshots > 1) overlap = null;
      this.handlers.onSnapshot?.(data, resumed);
      // EventSource's own reconnections send Last-Event-ID, so they miss nothing.
      resumed = "none";
    });
    on("MetricsUpdated", (data) => {
      if (!data) return;
      withNonFinite(data);
      if (typeof data.last_step === "number") this.lastStep = data.last_step;
      if (overlap !== null) {
        const step = overlap;
        overlap = null;
        const rows: MetricRow[] = Array.isArray(data.rows) ? data.rows : [];
        const again = rows.filter((row) => row.step === step);
        if (again.length) this.handlers.onMerged?.({ rows: again });
        data = { ...data, rows: rows.filter((row) => row.step !== step) };
      }
      this.handlers.onMetrics?.(data);
    });
    on("MetricsMerged", (data) => data && this.handlers.onMerged?.(withNonFinite(data)));
    on("LogMessage", (data) => this.handlers.onLog?.(data));
    on("StatusChanged", (data) => this.handlers.onStatus?.(data));
    on("RunUpdated", (data) => this.handlers.onRunUpdated?.(data));
    on("ArtifactAdded", (data) => this.handlers.onArtifact?.(data));
    on("HistogramsUpdated", (data) => data && this.handlers.onHistograms?.(data));
    on("SystemUpdated", () => this.handlers.onSystem?.());
    on("MediaAdded", (data) => data && this.handlers.onMedia?.(data));
    on("RunDeleted", () => {
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
      if (this.closed) return;
      this.resumed = this.lastEventId !== null ? "exact" : "from-step";
      this.open();
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

/**
 * The store-wide stream, open while at least one view listens to it and the
 * page is not released (hidden for a while). It sends no catch-up, so when it
 * opens again after a release each view's `onResync` reloads what it shows.
 */
class StoreStream {
  private source: EventSource | null = null;
  private listeners = new Set<StoreListener>();
  private resyncListeners = new Set<() => void>();
  private reopenTimer: number | undefined;

  constructor() {
    pageActivity.subscribe((active) => (active ? this.resume() : this.close()));
  }

  subscribe(listener: StoreListener, onResync?: () => void): () => void {
    this.listeners.add(listener);
    if (onResync) this.resyncListeners.add(onResync);
    if (!this.source) this.open();
    return () => {
      this.listeners.delete(listener);
      if (onResync) this.resyncListeners.delete(onResync);
      if (this.listeners.size === 0) this.close();
    };
  }

  private resume(): void {
    if (!this.listeners.size || this.source) return;
    this.open();
    for (const listener of [...this.resyncListeners]) listener();
  }

  private open(): void {
    if (!pageActivity.active) return;
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


const NON_FINITE: Record<string, number> = { NaN: NaN, Infinity: Infinity, "-Infinity": -Infinity };

/**
 * Put the NaN and ±Inf values that an event names in `non_finite` into its
 * rows, where JSON carries them as null, and return the event's data.
 */
function withNonFinite<T extends { rows: MetricRow[]; non_finite?: Record<string, [number, string][]> }>(data: T): T {
  const rows = Array.isArray(data.rows) ? data.rows : [];
  for (const [name, cells] of Object.entries(data.non_finite ?? {})) {
    for (const [index, text] of cells) {
      if (rows[index] && text in NON_FINITE) rows[index][name] = NON_FINITE[text];
    }
  }
  return data;
}
