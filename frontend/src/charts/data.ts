// Metric rows of a run, decoded and kept for the charts.
//
// How NaN and ±Inf are kept visible
// ---------------------------------
// JSON cannot carry NaN or ±Inf, so the server sends them as null; its Arrow
// format keeps them exactly. History and zoomed ranges are therefore fetched
// as Arrow (`format=arrow`), and every NaN, +Inf and −Inf found there is
// drawn as a marker. That is not enough on its own: expman-rs 1.3 writes NaN
// and ±Inf into its live segments but turns them into null when it merges a
// closed run into vectors.parquet, and rows pushed over SSE are JSON. So a
// null where a metric was evidently logged is marked too, as "null", never
// drawn as a silent gap. A null counts as such (MISSING below) when:
//   1. it lies on the metric's own step grid (the gcd of the gaps between the
//      steps where it has values) between its first and last value. A metric
//      has a grid only when two of its values are one grid step apart, so one
//      logged at irregular steps, such as 5, 10 and 19, has none. Or
//   2. it lies on that grid after its last value and the run's recorded last
//      value of the metric (run.yaml `vectors`) is there but not a finite
//      number, as when a run diverges to NaN and stays there, or
//   3. no metric has a value in that row, although the row was written. After
//      the metric's last value that holds only with rule 2's condition: the
//      writer leaves such a row when the last step logged only a NaN of
//      another metric, and the metrics it did not log there are not null.
// The rules are applied only to rows known to be complete (`Chunk.full`):
// in downsampled answers the server blanks the cells of rows it kept for
// other columns, so there a null carries no information and is skipped.

import { tableFromIPC, Type, type Table } from "apache-arrow";

import { getBytes, runUrl, withQuery } from "../api";
import type { MetricRow } from "../types";

/** The kind of one cell. */
export const FINITE = 0;
export const NAN = 1;
export const POS_INF = 2;
export const NEG_INF = 3;
/** A null where the metric was evidently logged (see the rules above). */
export const MISSING = 4;
/** No value, and none expected: the row was logged for other metrics, or blanked by downsampling. */
export const ABSENT = 5;

export const KIND_LABELS: Record<number, string> = {
  [NAN]: "NaN",
  [POS_INF]: "+Inf",
  [NEG_INF]: "−Inf",
  [MISSING]: "null",
};

/** The number of points per metric that history and zoom requests ask the server for. */
export const MAX_POINTS = 2000;

/** A zoomed range is fetched whole (max_points=0) when it is estimated to hold at most this many rows. */
const FULL_DETAIL_ROWS = 5000;

/** Live rows kept before the history is fetched again, downsampled, to bound memory. */
const MAX_LIVE_ROWS = 20000;

interface Column {
  values: number[];
  kinds: number[];
}

/** Rows of one answer (or of the live stream), column by column. */
export interface Chunk {
  /** Every row of the step range is here: the server did not downsample. */
  full: boolean;
  steps: number[];
  /** Milliseconds since the epoch; NaN where a row has no timestamp. */
  times: number[];
  columns: Map<string, Column>;
}

/** One metric's points in step order, ready to plot. */
export interface Series {
  steps: number[];
  times: number[];
  values: number[];
  kinds: number[];
}

export function emptyChunk(full: boolean): Chunk {
  return { full, steps: [], times: [], columns: new Map() };
}

function kindOf(value: number): number {
  if (Number.isNaN(value)) return NAN;
  if (value === Infinity) return POS_INF;
  if (value === -Infinity) return NEG_INF;
  return FINITE;
}

function isNumericType(typeId: Type): boolean {
  return typeId === Type.Float || typeId === Type.Int;
}

/** Decode an Arrow IPC stream of metric rows. */
export function chunkFromArrow(buffer: ArrayBuffer, full: boolean): Chunk {
  const chunk = emptyChunk(full);
  if (buffer.byteLength === 0) return chunk;
  const table: Table = tableFromIPC(new Uint8Array(buffer));
  const rows = table.numRows;
  const step = table.getChild("step");
  const timestamp = table.getChild("timestamp");
  for (let i = 0; i < rows; i++) {
    const s = step?.get(i);
    chunk.steps.push(s === null || s === undefined ? NaN : Number(s));
    const t = timestamp?.get(i);
    chunk.times.push(typeof t === "number" ? t : t instanceof Date ? t.getTime() : NaN);
  }
  for (const field of table.schema.fields) {
    if (field.name === "step" || field.name === "timestamp" || !isNumericType(field.typeId)) continue;
    const vector = table.getChild(field.name)!;
    const values: number[] = new Array(rows);
    const kinds: number[] = new Array(rows);
    for (let i = 0; i < rows; i++) {
      const raw = vector.get(i);
      if (raw === null || raw === undefined) {
        values[i] = NaN;
        kinds[i] = ABSENT;
      } else {
        // NOTE: int64 values past 2^53 lose precision here; charts need doubles.
        const value = Number(raw);
        values[i] = value;
        kinds[i] = kindOf(value);
      }
    }
    chunk.columns.set(field.name, { values, kinds });
  }
  return chunk;
}

/** Append JSON rows (from SSE) to a chunk; a null is ABSENT until marked. */
export function appendJsonRows(chunk: Chunk, rows: MetricRow[]): void {
  const start = chunk.steps.length;
  for (const row of rows) {
    chunk.steps.push(typeof row.step === "number" ? row.step : NaN);
    chunk.times.push(row.timestamp ? Date.parse(row.timestamp) : NaN);
  }
  const end = chunk.steps.length;
  const names = new Set<string>(chunk.columns.keys());
  for (const row of rows) for (const key of Object.keys(row)) if (key !== "step" && key !== "timestamp") names.add(key);
  for (const name of names) {
    let column = chunk.columns.get(name);
    if (!column) {
      column = { values: new Array(start).fill(NaN), kinds: new Array(start).fill(ABSENT) };
      chunk.columns.set(name, column);
    }
    for (let i = start; i < end; i++) {
      const value = rows[i - start][name];
      if (typeof value === "number") {
        column.values.push(value);
        column.kinds.push(kindOf(value));
      } else {
        column.values.push(NaN);
        column.kinds.push(ABSENT);
      }
    }
  }
}

/**
 * Put the values of rows into the chunk's row of the same step, searching
 * from the end (a live run has each step once). Return the rows whose step
 * the chunk does not have.
 */
function mergeJsonRows(chunk: Chunk, rows: MetricRow[]): MetricRow[] {
  const unmatched: MetricRow[] = [];
  for (const row of rows) {
    const index = chunk.steps.lastIndexOf(typeof row.step === "number" ? row.step : NaN);
    if (index < 0) {
      unmatched.push(row);
      continue;
    }
    if (row.timestamp) chunk.times[index] = Date.parse(row.timestamp);
    for (const [name, value] of Object.entries(row)) {
      if (name === "step" || name === "timestamp") continue;
      let column = chunk.columns.get(name);
      if (!column) {
        if (typeof value !== "number") continue;
        column = { values: new Array(chunk.steps.length).fill(NaN), kinds: new Array(chunk.steps.length).fill(ABSENT) };
        chunk.columns.set(name, column);
      }
      column.values[index] = typeof value === "number" ? value : NaN;
      column.kinds[index] = typeof value === "number" ? kindOf(value) : ABSENT;
    }
    marksCache.delete(chunk);
  }
  return unmatched;
}

/** Return the rows of a chunk as JSON-style rows (NaN and ±Inf become numbers, absent values null). */
function rowsOf(chunk: Chunk): MetricRow[] {
  return chunk.steps.map((step, i) => {
    const row: MetricRow = { step, timestamp: null };
    for (const [name, column] of chunk.columns) row[name] = column.kinds[i] === ABSENT ? null : column.values[i];
    return row;
  });
}

/** Return the rows of a chunk from index `start` on. */
function sliceChunk(chunk: Chunk, start: number): Chunk {
  const columns = new Map<string, Column>();
  for (const [name, column] of chunk.columns) {
    columns.set(name, { values: column.values.slice(start), kinds: column.kinds.slice(start) });
  }
  return { full: chunk.full, steps: chunk.steps.slice(start), times: chunk.times.slice(start), columns };
}

function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}

/** A metric's step grid: its first and last steps with a value, and the gap of the grid (0 for none). */
interface Grid {
  stride: number;
  first: number;
  last: number;
}

/**
 * Return the step grid of a metric over the complete chunks of a run (history
 * and live rows together, so that a value that arrived live counts too).
 */
function metricGrid(chunks: Chunk[], name: string): Grid {
  const steps: number[] = [];
  for (const chunk of chunks) {
    const column = chunk.columns.get(name);
    if (!chunk.full || !column) continue;
    for (let i = 0; i < column.kinds.length; i++) {
      if (column.kinds[i] !== ABSENT && Number.isFinite(chunk.steps[i])) steps.push(chunk.steps[i]);
    }
  }
  steps.sort((a, b) => a - b);
  let stride = 0;
  let smallestGap = Infinity;
  for (let k = 1; k < steps.length; k++) {
    const gap = steps[k] - steps[k - 1];
    if (gap > 0 && Number.isInteger(gap)) {
      stride = gcd(stride, gap);
      smallestGap = Math.min(smallestGap, gap);
    }
  }
  if (stride !== smallestGap) stride = 0; // Irregular steps have no grid.
  return { stride, first: steps.length ? steps[0] : NaN, last: steps.length ? steps[steps.length - 1] : NaN };
}

/**
 * Return the kinds of a column with rules 1-3 of the header applied, for a
 * complete chunk. `lastValueUnknown` is true when the run's recorded last
 * value of the metric is there but not a finite number.
 */
function markMissing(chunk: Chunk, name: string, grid: Grid, lastValueUnknown: boolean): number[] {
  const kinds = chunk.columns.get(name)!.kinds.slice();
  for (let i = 0; i < kinds.length; i++) {
    if (kinds[i] !== ABSENT) continue;
    const step = chunk.steps[i];
    const onGrid = grid.stride > 0 && step > grid.first && (step - grid.first) % grid.stride === 0;
    // True also for a metric without any value, whose grid has no last step.
    const afterLastValue = !(step <= grid.last);
    if (onGrid && (step < grid.last || lastValueUnknown)) kinds[i] = MISSING;
    else if (rowIsEmpty(chunk, i) && (!afterLastValue || lastValueUnknown)) kinds[i] = MISSING;
  }
  return kinds;
}

interface Marks {
  rows: number;
  unknown: boolean;
  grid: Grid;
  kinds: number[];
}

const marksCache = new WeakMap<Chunk, Map<string, Marks>>();

/** Return `markMissing` for a chunk, computed again only when the chunk or the metric's grid changed. */
function cachedMarks(chunk: Chunk, name: string, grid: Grid, lastValueUnknown: boolean): number[] {
  let byName = marksCache.get(chunk);
  if (!byName) {
    byName = new Map();
    marksCache.set(chunk, byName);
  }
  const cached = byName.get(name);
  const sameGrid =
    cached !== undefined &&
    cached.grid.stride === grid.stride &&
    Object.is(cached.grid.first, grid.first) &&
    Object.is(cached.grid.last, grid.last);
  if (cached && sameGrid && cached.rows === chunk.steps.length && cached.unknown === lastValueUnknown) return cached.kinds;
  const kinds = markMissing(chunk, name, grid, lastValueUnknown);
  byName.set(name, { rows: chunk.steps.length, unknown: lastValueUnknown, grid, kinds });
  return kinds;
}

function rowIsEmpty(chunk: Chunk, row: number): boolean {
  for (const column of chunk.columns.values()) if (column.kinds[row] !== ABSENT) return false;
  return true;
}

/** The API route of a run's rows: training metrics, or the system metrics the logger samples. */
export type MetricsRoute = "metrics" | "system";

/** Fetch metric rows as Arrow; `since`/`until` bound the steps (since exclusive, until inclusive). */
export async function fetchChunk(
  experiment: string,
  run: string,
  options: { since?: number | null; until?: number | null; maxPoints: number; signal?: AbortSignal; route?: MetricsRoute },
): Promise<Chunk> {
  const url = withQuery(runUrl(experiment, run, options.route ?? "metrics"), {
    format: "arrow",
    max_points: options.maxPoints,
    since_step: options.since ?? undefined,
    until_step: options.until ?? undefined,
  });
  const buffer = await getBytes(url, options.signal);
  return chunkFromArrow(buffer, options.maxPoints === 0);
}

interface Zoom {
  since: number | null;
  until: number | null;
  chunk: Chunk;
}

/** The metric rows of one run: the history, rows pushed live since, and a zoomed range. */
export class RunMetrics {
  history: Chunk = emptyChunk(true);
  live: Chunk = emptyChunk(true);
  zoom: Zoom | null = null;
  /** Rows on disk when the history was fetched (from the run's details). */
  totalRows = 0;
  /** Bumped on every change; charts redraw when it changes. */
  version = 0;
  private seriesCache = new Map<string, { version: number; series: Series }>();

  constructor(
    readonly experiment: string,
    readonly run: string,
    /** The run's recorded last value of each metric (run.yaml `vectors`). */
    public lastValues: Record<string, unknown> = {},
    readonly route: MetricsRoute = "metrics",
  ) {}

  /** Fetch the whole run: every row when it is small, else `MAX_POINTS` per metric. */
  async loadHistory(totalRows: number, signal?: AbortSignal): Promise<void> {
    this.totalRows = totalRows;
    const maxPoints = totalRows <= MAX_POINTS ? 0 : MAX_POINTS;
    this.history = await fetchChunk(this.experiment, this.run, { maxPoints, signal, route: this.route });
    this.live = emptyChunk(true);
    this.changed();
  }

  /** The last step loaded, the point from which a live stream continues; null when no rows. */
  lastStep(): number | null {
    const steps = this.live.steps.length ? this.live.steps : this.history.steps;
    for (let i = steps.length - 1; i >= 0; i--) if (Number.isFinite(steps[i])) return steps[i];
    return null;
  }

  /** Rows added over the live stream since the history was fetched. */
  get liveRows(): number {
    return this.live.steps.length;
  }

  get needsCompaction(): boolean {
    return this.live.steps.length > MAX_LIVE_ROWS;
  }

  appendRows(rows: MetricRow[]): void {
    if (!rows.length) return;
    appendJsonRows(this.live, rows);
    this.changed();
  }

  /**
   * Put rows sent again with values merged in (a metric logged again at a
   * step already streamed) in the place of the rows of their steps. A row
   * whose step is not loaded (left out of a downsampled history) is dropped.
   */
  mergeRows(rows: MetricRow[]): void {
    if (!rows.length) return;
    const rest = mergeJsonRows(this.live, rows);
    if (this.zoom) mergeJsonRows(this.zoom.chunk, rows);
    if (rest.length) mergeJsonRows(this.history, rest);
    this.changed();
  }

  /**
   * Add rows polled from the step before the last loaded one on. The row of
   * the last loaded step replaces the loaded one, because a metric logged at
   * that step later is merged into it. The rows after it are appended.
   */
  appendPolled(chunk: Chunk, lastStep: number | null): void {
    if (lastStep === null) {
      this.appendChunk(chunk);
      return;
    }
    const rows = rowsOf(chunk);
    const loaded = rows.filter((row) => typeof row.step === "number" && row.step <= lastStep);
    if (loaded.length) this.mergeRows(loaded);
    this.appendChunk(sliceChunk(chunk, loaded.length));
  }

  appendChunk(chunk: Chunk): void {
    if (!chunk.steps.length) return;
    const rows = rowsOf(chunk);
    // Keep exact NaN and ±Inf: JSON-style rows would lose them, so patch the kinds afterwards.
    const start = this.live.steps.length;
    appendJsonRows(this.live, rows);
    for (let i = 0; i < chunk.steps.length; i++) this.live.times[start + i] = chunk.times[i];
    for (const [name, column] of chunk.columns) {
      const target = this.live.columns.get(name)!;
      for (let i = 0; i < chunk.steps.length; i++) target.kinds[start + i] = column.kinds[i];
    }
    this.changed();
  }

  /** Replace the history with a fresh downsampled copy and drop the live rows it covers. */
  async compact(): Promise<void> {
    const history = await fetchChunk(this.experiment, this.run, { maxPoints: MAX_POINTS, route: this.route });
    let last = -Infinity;
    for (const step of history.steps) if (step > last) last = step;
    const live = emptyChunk(true);
    const keep = this.live.steps.map((step, i) => (step > last ? i : -1)).filter((i) => i >= 0);
    for (const i of keep) {
      live.steps.push(this.live.steps[i]);
      live.times.push(this.live.times[i]);
    }
    for (const [name, column] of this.live.columns) {
      live.columns.set(name, { values: keep.map((i) => column.values[i]), kinds: keep.map((i) => column.kinds[i]) });
    }
    this.history = history;
    this.live = live;
    this.changed();
  }

  /** Whether the data in a step range is already every row (so zooming needs no fetch). */
  isFullIn(since: number | null, until: number | null): boolean {
    if (this.history.full) return true;
    const lo = since ?? -Infinity;
    const hi = until ?? Infinity;
    const firstLive = this.live.steps.length ? this.live.steps[0] : Infinity;
    return lo >= firstLive - 1 && hi >= lo;
  }

  /**
   * Estimate the rows on disk in a step range from the downsampled history.
   * The server keeps each bucket's extremes, so the kept rows are spread like
   * the original ones and the ratio holds roughly; it is an estimate only.
   */
  estimateRows(since: number | null, until: number | null): number {
    const lo = since ?? -Infinity;
    const hi = until ?? Infinity;
    const steps = this.history.steps;
    if (!steps.length) return 0;
    let inside = 0;
    for (const step of steps) if (step > lo && step <= hi) inside += 1;
    return Math.ceil((inside / steps.length) * Math.max(this.totalRows, steps.length));
  }

  /** Fetch the rows of a step range at full detail, or finer-downsampled when it is large. */
  async loadZoom(since: number | null, until: number | null, signal?: AbortSignal): Promise<"full" | "downsampled"> {
    const maxPoints = this.estimateRows(since, until) <= FULL_DETAIL_ROWS ? 0 : MAX_POINTS;
    const chunk = await fetchChunk(this.experiment, this.run, { since, until, maxPoints, signal, route: this.route });
    this.zoom = { since, until, chunk };
    this.changed();
    return chunk.full ? "full" : "downsampled";
  }

  clearZoom(): void {
    if (!this.zoom) return;
    this.zoom = null;
    this.changed();
  }

  /** Names of the numeric metric columns, in order of first appearance. */
  metricNames(): string[] {
    const names = new Set<string>();
    for (const chunk of [this.history, this.live, this.zoom?.chunk]) {
      if (chunk) for (const name of chunk.columns.keys()) names.add(name);
    }
    return [...names];
  }

  /** Return one metric's points: history and live rows, with the zoomed range's rows in its place. */
  series(name: string): Series {
    const cached = this.seriesCache.get(name);
    if (cached && cached.version === this.version) return cached.series;
    const series: Series = { steps: [], times: [], values: [], kinds: [] };
    const zoom = this.zoom;
    const inZoom = (step: number) =>
      zoom !== null && (zoom.since === null || step > zoom.since) && (zoom.until === null || step <= zoom.until);
    const lastValue = this.lastValues[name];
    // A metric missing from the recorded last values was first logged after they were loaded.
    const lastValueUnknown = name in this.lastValues && !(typeof lastValue === "number" && Number.isFinite(lastValue));

    const grid = metricGrid(zoom ? [this.history, zoom.chunk, this.live] : [this.history, this.live], name);

    const add = (chunk: Chunk, keep: (step: number) => boolean) => {
      const column = chunk.columns.get(name);
      if (!column) return;
      const kinds = chunk.full ? cachedMarks(chunk, name, grid, lastValueUnknown) : column.kinds;
      for (let i = 0; i < chunk.steps.length; i++) {
        if (kinds[i] === ABSENT || !keep(chunk.steps[i])) continue;
        series.steps.push(chunk.steps[i]);
        series.times.push(chunk.times[i]);
        series.values.push(column.values[i]);
        series.kinds.push(kinds[i]);
      }
    };
    const outsideZoom = (step: number) => !inZoom(step);
    add(this.history, outsideZoom);
    if (zoom) add(zoom.chunk, () => true);
    add(this.live, outsideZoom);

    this.seriesCache.set(name, { version: this.version, series });
    return series;
  }

  /**
   * Return the step range (since exclusive, until inclusive) that covers x
   * values from `xMin` to `xMax`, one loaded row beyond each edge so that
   * lines reach the edges of the plot.
   */
  stepRangeFor(xMin: number, xMax: number, xOf: (step: number, time: number) => number): [number | null, number | null] {
    let since: number | null = null;
    let until: number | null = null;
    for (const chunk of [this.history, this.live]) {
      for (let i = 0; i < chunk.steps.length; i++) {
        const step = chunk.steps[i];
        const x = xOf(step, chunk.times[i]);
        if (!Number.isFinite(step) || !Number.isFinite(x)) continue;
        if (x < xMin && (since === null || step > since)) since = step;
        if (x > xMax && (until === null || step < until)) until = step;
      }
    }
    // since_step is exclusive: one less keeps the row just outside the left edge.
    return [since === null ? null : since - 1, until];
  }

  private changed(): void {
    this.version += 1;
  }
}
