// One run as a view shows it: details, metric rows, log tails, and the live
// stream that keeps them current.

import { ApiError, getJson, runUrl, withQuery } from "./api";
import type { RunMetrics } from "./charts/data";
import { RunStream, type StreamState } from "./live";
import type { RunDetails, RunStatus } from "./types";

/** Lines of a log kept per file; older lines are dropped. */
const MAX_LOG_LINES = 5000;

/** Lines fetched from the end of each log when a run opens. */
export const LOG_TAIL_LINES = 200;

/** Seconds between two fetches of new rows for a live run that has no stream of its own. */
const POLL_SECONDS = 5;

export type LiveState = StreamState | "polling" | "off";

export interface SessionOptions {
  /** Fetch the log tails and keep them current. */
  logs: boolean;
  /**
   * Open a live stream even when the run is not RUNNING, to see it deleted,
   * resumed or edited. Views that show many runs keep streams for live runs only.
   */
  streamAlways: boolean;
  /** Return whether one more live stream may be opened; when not, new rows are polled. */
  mayStream(): boolean;
}

type Listener = () => void;

export class RunSession {
  details: RunDetails | undefined;
  /** The error that kept the run from loading (it does not exist, the server failed, …). */
  error: unknown;
  deleted = false;
  status: RunStatus = null;
  stale = false;
  metrics: RunMetrics | undefined;
  metricsError: unknown;
  logs = new Map<string, string[]>();
  logsError: unknown;
  liveState: LiveState = "off";
  zoomState: "none" | "loading" | "full" | "downsampled" | "error" = "none";
  /** Bumped when an artifact was added, so that the artifacts list reloads. */
  artifactsVersion = 0;
  version = 0;

  private stream: RunStream | null = null;
  private pollTimer: number | undefined;
  private zoomRequest = 0;
  private closed = false;
  private controller = new AbortController();
  private listeners = new Set<Listener>();
  private compacting = false;

  constructor(
    readonly experiment: string,
    readonly run: string,
    private readonly options: SessionOptions,
  ) {}

  subscribe(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  get isLive(): boolean {
    return this.status === "RUNNING" && !this.stale && !this.deleted;
  }

  /** Load details, history and logs, then follow the run live. */
  async start(): Promise<void> {
    const signal = this.controller.signal;
    // Load the Arrow reader while the details are fetched; loadHistory awaits the same import.
    import("./charts/data").catch(() => undefined);
    try {
      this.details = await getJson<RunDetails>(runUrl(this.experiment, this.run), signal);
    } catch (error) {
      if (signal.aborted) return;
      this.error = error;
      this.changed();
      return;
    }
    this.status = this.details.status;
    this.stale = this.details.stale;
    this.changed();

    await Promise.all([this.loadHistory(signal), this.options.logs ? this.loadLogs(signal) : Promise.resolve()]);
    if (this.closed) return;
    if (this.options.streamAlways || this.isLive) this.follow();
  }

  private async loadHistory(signal: AbortSignal): Promise<void> {
    try {
      const { RunMetrics } = await import("./charts/data");
      const metrics = new RunMetrics(this.experiment, this.run, (this.details?.vectors as Record<string, unknown>) ?? {});
      await metrics.loadHistory(this.details?.rows ?? 0, signal);
      this.metrics = metrics;
    } catch (error) {
      if (signal.aborted) return;
      this.metricsError = error;
    }
    this.changed();
  }

  private async loadLogs(signal: AbortSignal): Promise<void> {
    const files = this.details?.logs ?? [];
    try {
      await Promise.all(
        files.map(async (file) => {
          const url = withQuery(runUrl(this.experiment, this.run, "logs", file), { tail: LOG_TAIL_LINES });
          const response = await fetch(url, { signal, credentials: "same-origin" });
          if (!response.ok) throw new ApiError(response.status, `${file}: ${response.status} ${response.statusText}`);
          const text = await response.text();
          this.logs.set(file, splitLines(text));
        }),
      );
    } catch (error) {
      if (signal.aborted) return;
      this.logsError = error;
    }
    this.changed();
  }

  /** Open the live stream from the last loaded step, or poll when no stream may be opened. */
  private follow(): void {
    if (this.stream || this.pollTimer !== undefined || this.closed) return;
    if (!this.options.mayStream()) {
      this.liveState = "polling";
      this.pollTimer = window.setInterval(() => void this.poll(), POLL_SECONDS * 1000);
      this.changed();
      return;
    }
    const since = this.metrics ? this.metrics.lastStep() : null;
    this.stream = new RunStream(this.experiment, this.run, since, {
      onSnapshot: (data) => {
        if (!data) return;
        this.status = data.status;
        this.stale = data.stale;
        this.changed();
      },
      onMetrics: (data) => {
        if (!data || !this.metrics) return;
        this.metrics.appendRows(data.rows ?? []);
        if (this.metrics.needsCompaction) void this.compact();
        this.changed();
      },
      onLog: (data) => {
        if (!data || !this.options.logs) return;
        const lines = this.logs.get(data.file) ?? [];
        lines.push(...data.lines);
        if (lines.length > MAX_LOG_LINES) lines.splice(0, lines.length - MAX_LOG_LINES);
        this.logs.set(data.file, lines);
        this.changed();
      },
      onStatus: (data) => {
        if (!data) return;
        this.status = data.status;
        if (this.details) {
          this.details = { ...this.details, status: data.status, finished_at: data.finished_at ?? this.details.finished_at };
        }
        this.changed();
      },
      onRunUpdated: (data) => {
        if (data && typeof data === "object") this.details = { ...this.details, ...(data as RunDetails) };
        this.changed();
      },
      onArtifact: () => {
        this.artifactsVersion += 1;
        this.changed();
      },
      onDeleted: () => {
        this.deleted = true;
        this.changed();
      },
      onState: (state) => {
        this.liveState = state;
        this.changed();
      },
      onRejected: async () => {
        try {
          await getJson(runUrl(this.experiment, this.run));
          return true;
        } catch (error) {
          if (error instanceof ApiError && error.status === 404) {
            this.deleted = true;
            this.changed();
            return false;
          }
          return true;
        }
      },
    });
  }

  /** Fetch the rows after the last loaded step (for runs followed without a stream). */
  private async poll(): Promise<void> {
    if (!this.metrics || this.closed) return;
    try {
      const { fetchChunk } = await import("./charts/data");
      const chunk = await fetchChunk(this.experiment, this.run, { since: this.metrics.lastStep() ?? -1, maxPoints: 0 });
      this.metrics.appendChunk(chunk);
      const details = await getJson<RunDetails>(runUrl(this.experiment, this.run));
      this.status = details.status;
      this.stale = details.stale;
      if (!this.isLive) this.stopFollowing();
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) {
        this.deleted = true;
        this.stopFollowing();
      }
    }
    this.changed();
  }

  private async compact(): Promise<void> {
    if (this.compacting || !this.metrics) return;
    this.compacting = true;
    try {
      await this.metrics.compact();
    } catch {
      // Keep the rows as they are; the next update tries again.
    }
    this.compacting = false;
    this.changed();
  }

  /** Show a step range at full detail (fetching it unless it is already complete); null resets. */
  async zoom(range: [number | null, number | null] | null): Promise<void> {
    const metrics = this.metrics;
    if (!metrics) return;
    const request = ++this.zoomRequest;
    if (range === null) {
      metrics.clearZoom();
      this.zoomState = "none";
      this.changed();
      return;
    }
    const [since, until] = range;
    if (metrics.isFullIn(since, until)) {
      metrics.clearZoom();
      this.zoomState = "full";
      this.changed();
      return;
    }
    this.zoomState = "loading";
    this.changed();
    try {
      const detail = await metrics.loadZoom(since, until, this.controller.signal);
      if (request !== this.zoomRequest) return;
      this.zoomState = detail;
    } catch (error) {
      if (request !== this.zoomRequest || this.closed) return;
      this.zoomState = "error";
      this.metricsError = error;
    }
    this.changed();
  }

  private stopFollowing(): void {
    this.stream?.close();
    this.stream = null;
    window.clearInterval(this.pollTimer);
    this.pollTimer = undefined;
    this.liveState = "off";
  }

  close(): void {
    this.closed = true;
    this.controller.abort();
    this.stopFollowing();
    this.listeners.clear();
  }

  private changed(): void {
    this.version += 1;
    for (const listener of this.listeners) listener();
  }
}

export function splitLines(text: string): string[] {
  if (!text) return [];
  const lines = text.split("\n");
  if (lines[lines.length - 1] === "") lines.pop();
  return lines;
}
