// One run as a view shows it: details, metric rows, log tails, and the live
// stream that keeps them current.

import { ApiError, getJson, runUrl, withQuery } from "./api";
import type { RunMetrics } from "./charts/data";
import { RunStream, type Resumed, type StreamState } from "./live";
import type { HistogramsByTag, MediaEntry, RunDetails, RunStatus } from "./types";
import { pageActivity } from "./visibility";

/** Lines of a log kept per file; older lines are dropped. */
const MAX_LOG_LINES = 5000;

/** Lines fetched from the end of each log when a run opens. */
export const LOG_TAIL_LINES = 200;

/** Seconds between two fetches of new rows for a live run that has no stream of its own. */
const POLL_SECONDS = 5;

/**
 * Seconds between two fetches of new system metric rows of a live run, besides
 * the fetch that each SystemUpdated event starts: a fallback for a stream that
 * is down. expman-rs samples them every 15 s by default (`system_metrics_interval_secs`).
 */
const SYSTEM_POLL_SECONDS = 30;

/** The way the run is followed. It is "paused" while the page is hidden and its stream closed. */
export type LiveState = StreamState | "polling" | "paused" | "off";

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
  /** Load the run's histogram tags, media list and system metrics, and keep them current. */
  extras?: boolean;
}

/** Return the key that identifies a media entry; a file logged again at the same tag and step is a new entry. */
function mediaKey(entry: MediaEntry): string {
  return `${entry.file}\0${entry.logged_at ?? ""}`;
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
  /** The run's histogram tags in name order; undefined until loaded (with `extras`). */
  histogramTags: string[] | undefined;
  histogramsError: unknown;
  /** Per tag, bumped when new histograms of it arrive, so that its chart fetches them. */
  histogramVersions = new Map<string, number>();
  /** The run's media entries in logged order; undefined until loaded (with `extras`). */
  media: MediaEntry[] | undefined;
  mediaError: unknown;
  /** The system metric rows (CPU, memory, GPU) the logger sampled; undefined until loaded (with `extras`). */
  system: RunMetrics | undefined;
  systemError: unknown;
  version = 0;

  private stream: RunStream | null = null;
  private pollTimer: number | undefined;
  private zoomRequest = 0;
  private closed = false;
  private controller = new AbortController();
  private listeners = new Set<Listener>();
  private compacting = false;
  private systemTimer: number | undefined;
  private systemFetching = false;
  private systemFetchAgain = false;
  /** Whether the run was followed when the page released its streams, so it is followed again on return. */
  private followOnReturn = false;
  /**
   * The id of the last event of the stream closed when the page released its
   * streams, so that the next stream resumes exactly after it. It is null
   * before any stream, and when rows came by polling since.
   */
  private resumeId: string | null = null;
  /** Log lines that arrived while the log tails are fetched again, appended once they are in. */
  private pendingLogLines: Map<string, string[]> | null = null;
  private unsubscribeActivity: (() => void) | undefined;

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

    await Promise.all([
      this.loadHistory(signal),
      this.options.logs ? this.loadLogs(signal) : Promise.resolve(),
      this.options.extras ? this.loadExtras(signal) : Promise.resolve(),
    ]);
    if (this.closed) return;
    this.unsubscribeActivity = pageActivity.subscribe((active) => (active ? this.takeBack() : this.release()));
    if (this.options.streamAlways || this.isLive) this.follow();
    if (this.options.extras) this.systemTimer = window.setInterval(() => void this.pollSystem(), SYSTEM_POLL_SECONDS * 1000);
  }

  private async loadExtras(signal: AbortSignal): Promise<void> {
    await Promise.all([this.loadHistogramTags(signal), this.loadMedia(signal), this.loadSystem(signal)]);
  }

  private async loadHistogramTags(signal: AbortSignal): Promise<void> {
    try {
      // One histogram per tag is enough to learn the tags; the charts fetch their own.
      const url = withQuery(runUrl(this.experiment, this.run, "histograms"), { max_steps: 1 });
      const byTag = await getJson<HistogramsByTag>(url, signal);
      this.histogramTags = mergeTags(this.histogramTags ?? [], Object.keys(byTag));
      this.histogramsError = undefined;
    } catch (error) {
      if (signal.aborted) return;
      this.histogramsError = error;
    }
    this.changed();
  }

  private async loadMedia(signal: AbortSignal): Promise<void> {
    try {
      const entries = await getJson<MediaEntry[]>(runUrl(this.experiment, this.run, "media"), signal);
      this.addMedia(entries);
      this.mediaError = undefined;
    } catch (error) {
      if (signal.aborted) return;
      this.mediaError = error;
    }
    this.changed();
  }

  /** Add media entries not seen yet, keeping the logged order. */
  private addMedia(entries: MediaEntry[]): void {
    const known = new Set((this.media ?? []).map(mediaKey));
    const added = entries.filter((entry) => !known.has(mediaKey(entry)));
    if (added.length || !this.media) this.media = [...(this.media ?? []), ...added];
  }

  private async loadSystem(signal: AbortSignal): Promise<void> {
    try {
      const { RunMetrics } = await import("./charts/data");
      const system = new RunMetrics(this.experiment, this.run, {}, "system");
      // The row count is unknown here, so the history is requested downsampled; a small run comes back whole.
      await system.loadHistory(Number.MAX_SAFE_INTEGER, signal);
      system.totalRows = system.history.steps.length;
      this.system = system;
    } catch (error) {
      if (signal.aborted) return;
      this.systemError = error;
    }
    this.changed();
  }

  /** Fetch the system metric rows after the last loaded one, while the run is live. */
  private async pollSystem(): Promise<void> {
    if (!this.system || this.closed || !this.isLive) return;
    if (this.systemFetching) {
      this.systemFetchAgain = true; // Rows written after this fetch began.
      return;
    }
    this.systemFetching = true;
    try {
      const { fetchChunk } = await import("./charts/data");
      const since = this.system.lastStep() ?? -1;
      const chunk = await fetchChunk(this.experiment, this.run, { since, maxPoints: 0, route: "system", signal: this.controller.signal });
      if (!chunk.steps.length) return;
      this.system.appendChunk(chunk);
      this.changed();
    } catch {
      // The next poll tries again; the connection monitor reports an unreachable server.
    } finally {
      this.systemFetching = false;
    }
    if (this.systemFetchAgain) {
      this.systemFetchAgain = false;
      void this.pollSystem();
    }
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

  /** Stop following while the page is hidden; `takeBack` resumes. */
  private release(): void {
    if (!this.stream && this.pollTimer === undefined) return;
    this.followOnReturn = true;
    this.stopFollowing();
    this.liveState = "paused";
    this.changed();
  }

  /**
   * Follow the run again once the page is shown. The new stream resumes after
   * the last event of the one closed (else after the last metric step loaded),
   * and its first Snapshot reloads what it does not replay.
   */
  private takeBack(): void {
    if (!this.followOnReturn || this.closed) return;
    this.followOnReturn = false;
    this.liveState = "off";
    this.follow(true);
  }

  /** Open the live stream from the last loaded step, or poll when no stream may be opened. */
  private follow(resumed = false): void {
    if (this.stream || this.pollTimer !== undefined || this.closed) return;
    if (!pageActivity.active) {
      this.followOnReturn = true;
      this.liveState = "paused";
      this.changed();
      return;
    }
    if (!this.options.mayStream()) {
      this.liveState = "polling";
      this.pollTimer = window.setInterval(() => void this.poll(), POLL_SECONDS * 1000);
      if (resumed) void this.poll();
      this.changed();
      return;
    }
    const start = { sinceStep: this.metrics ? this.metrics.lastStep() : null, lastEventId: this.resumeId };
    let reopened: Resumed = "none";
    if (resumed) reopened = start.lastEventId !== null ? "exact" : "from-step";
    if (reopened === "from-step" && this.options.logs) this.pendingLogLines = new Map();
    this.stream = new RunStream(this.experiment, this.run, start, {
      onSnapshot: (data, streamResumed) => {
        if (!data) return;
        this.status = data.status;
        this.stale = data.stale;
        const missed = reopened !== "none" ? reopened : streamResumed;
        if (missed !== "none") this.resync(missed);
        reopened = "none";
        this.changed();
      },
      onMetrics: (data) => {
        if (!data || !this.metrics) return;
        this.metrics.appendRows(data.rows ?? []);
        if (this.metrics.needsCompaction) void this.compact();
        this.changed();
      },
      onMerged: (data) => {
        if (!this.metrics) return;
        this.metrics.mergeRows(data.rows ?? []);
        this.changed();
      },
      onLog: (data) => {
        if (!data || !this.options.logs) return;
        if (this.pendingLogLines) {
          this.pendingLogLines.set(data.file, [...(this.pendingLogLines.get(data.file) ?? []), ...data.lines]);
          return;
        }
        this.appendLog(data.file, data.lines);
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
      onHistograms: (data) => {
        if (!this.options.extras) return;
        const tags = Array.isArray(data.tags) ? data.tags : [];
        this.histogramTags = mergeTags(this.histogramTags ?? [], tags);
        for (const tag of tags) this.histogramVersions.set(tag, (this.histogramVersions.get(tag) ?? 0) + 1);
        this.changed();
      },
      onSystem: () => {
        if (this.options.extras) void this.pollSystem();
      },
      onMedia: (data) => {
        if (!this.options.extras || !data || typeof data.file !== "string") return;
        this.addMedia([data]);
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
      // From the step before the last one loaded, so that a value merged into that step arrives too.
      const lastStep = this.metrics.lastStep();
      const chunk = await fetchChunk(this.experiment, this.run, { since: lastStep === null ? -1 : lastStep - 1, maxPoints: 0 });
      this.metrics.appendPolled(chunk, lastStep);
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

  private appendLog(file: string, added: string[]): void {
    const lines = this.logs.get(file) ?? [];
    lines.push(...added);
    if (lines.length > MAX_LOG_LINES) lines.splice(0, lines.length - MAX_LOG_LINES);
    this.logs.set(file, lines);
  }

  /**
   * Reload what a stream opened anew does not replay: the details (edits) and
   * artifacts always, and the log tails, histograms and media when it started
   * from a metric step.
   */
  private resync(missed: Exclude<Resumed, "none">): void {
    const signal = this.controller.signal;
    this.artifactsVersion += 1;
    getJson<RunDetails>(runUrl(this.experiment, this.run), signal).then(
      (details) => {
        this.details = details;
        this.changed();
      },
      () => undefined,
    );
    if (missed === "exact") return;
    if (this.options.logs) void this.resyncLogs(signal);
    if (this.options.extras) this.resyncExtras();
  }

  /**
   * Fetch the log tails again and append the lines that arrived over the
   * stream meanwhile, without the first of them that the tails already end with.
   */
  private async resyncLogs(signal: AbortSignal): Promise<void> {
    this.pendingLogLines ??= new Map();
    const tails = new Map<string, string[]>();
    try {
      await Promise.all(
        (this.details?.logs ?? []).map(async (file) => {
          const url = withQuery(runUrl(this.experiment, this.run, "logs", file), { tail: LOG_TAIL_LINES });
          const response = await fetch(url, { signal, credentials: "same-origin" });
          if (response.ok) tails.set(file, splitLines(await response.text()));
        }),
      );
    } catch {
      // Keep the lines shown; the ones that arrive from now on are appended.
    }
    if (signal.aborted) return;
    const pending = this.pendingLogLines;
    this.pendingLogLines = null;
    for (const [file, tail] of tails) this.logs.set(file, tail);
    for (const [file, lines] of pending) this.appendLog(file, withoutOverlap(this.logs.get(file) ?? [], lines));
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

  /** Reload the histogram tags and media list, and make every histogram chart fetch again. */
  private resyncExtras(): void {
    const signal = this.controller.signal;
    for (const tag of this.histogramTags ?? []) this.histogramVersions.set(tag, (this.histogramVersions.get(tag) ?? 0) + 1);
    void this.loadHistogramTags(signal);
    void this.loadMedia(signal);
  }

  private stopFollowing(): void {
    this.resumeId = this.stream ? this.stream.lastEventId : null;
    this.stream?.close();
    this.stream = null;
    window.clearInterval(this.pollTimer);
    this.pollTimer = undefined;
    this.liveState = "off";
  }

  close(): void {
    this.closed = true;
    this.unsubscribeActivity?.();
    window.clearInterval(this.systemTimer);
    this.controller.abort();
    this.stopFollowing();
    this.listeners.clear();
  }

  private changed(): void {
    this.version += 1;
    for (const listener of this.listeners) listener();
  }
}

/** Return `added` without its first lines when `lines` already ends with them. */
export function withoutOverlap(lines: string[], added: string[]): string[] {
  for (let overlap = Math.min(lines.length, added.length); overlap > 0; overlap--) {
    const start = lines.length - overlap;
    let same = true;
    for (let i = 0; i < overlap && same; i++) same = lines[start + i] === added[i];
    if (same) return added.slice(overlap);
  }
  return added;
}

function mergeTags(known: string[], added: string[]): string[] {
  const tags = new Set(known);
  for (const tag of added) tags.add(tag);
  return [...tags].sort((a, b) => a.localeCompare(b, undefined, { numeric: true }));
}

export function splitLines(text: string): string[] {
  if (!text) return [];
  const lines = text.split("\n");
  if (lines[lines.length - 1] === "") lines.pop();
  return lines;
}
