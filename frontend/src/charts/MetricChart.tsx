// One metric's chart: the selected runs overlaid, with a legend that shows
// the values under the cursor, drag-to-zoom, double-click to reset, and
// markers for NaN, ±Inf and null points.

import { useEffect, useMemo, useRef } from "preact/hooks";
import uPlot from "uplot";

import { ExportMenu } from "../export";
import { formatDateTime, formatDuration, formatNumber, formatTick } from "../format";
import { FINITE, KIND_LABELS, MISSING, NAN, NEG_INF, POS_INF, type RunMetrics } from "./data";
import { smoothEma } from "./smoothing";

export type XMode = "step" | "wall" | "relative";

export interface ChartSettings {
  x: XMode;
  /** EMA weight, 0 for none. */
  smoothing: number;
  log: boolean;
}

export interface ChartRun {
  key: string;
  label: string;
  color: string;
  metrics: RunMetrics | undefined;
  /** The run's start (ms since the epoch), the origin of relative time. */
  startMs: number | null;
}

/** A zoomed x range, in the units of the x axis (steps or seconds). */
export interface XRange {
  min: number;
  max: number;
}

const X_AXIS_LABELS: Record<XMode, string> = { step: "step", wall: "wall time", relative: "time since start" };

/** Below this many points a series is drawn with dots, so isolated points stay visible. */
const DOTS_BELOW = 60;
export const CHART_HEIGHT = 220;

/** Return the function that maps a row to its x value: step, wall time (s) or seconds since `startMs`. */
export function xMapping(mode: XMode, startMs: number | null): (step: number, time: number) => number {
  if (mode === "step") return (step) => step;
  if (mode === "wall") return (_step, time) => time / 1000;
  const origin = startMs ?? 0;
  return (_step, time) => (time - origin) / 1000;
}

interface Trace {
  run: ChartRun;
  xs: number[];
  steps: number[];
  /** The plotted raw values: a number, or null for a NaN, ±Inf or null point. */
  raw: (number | null)[];
  smooth: (number | null)[] | null;
  /** The exact value of each point (NaN for special points) and its kind. */
  values: number[];
  kinds: number[];
}

interface Built {
  data: uPlot.AlignedData;
  traces: Trace[];
  counts: Map<number, number>;
  hiddenNonPositive: number;
  points: number;
}

function buildTrace(run: ChartRun, metric: string, settings: ChartSettings, counts: Map<number, number>): [Trace, number] {
  const trace: Trace = { run, xs: [], steps: [], raw: [], smooth: null, values: [], kinds: [] };
  let hidden = 0;
  const series = run.metrics?.series(metric);
  if (!series) {
    // Keep the table shape the chart's series expect: x, raw and, with smoothing, smoothed.
    if (settings.smoothing > 0) trace.smooth = [];
    return [trace, 0];
  }
  let origin = run.startMs;
  if (origin === null) origin = series.times.find((time) => Number.isFinite(time)) ?? 0;
  const toX = xMapping(settings.x, origin);

  const order: number[] = [];
  const xs: number[] = new Array(series.steps.length);
  let sorted = true;
  for (let i = 0; i < series.steps.length; i++) {
    xs[i] = toX(series.steps[i], series.times[i]);
    if (!Number.isFinite(xs[i])) continue;
    if (order.length && xs[i] < xs[order[order.length - 1]]) sorted = false;
    order.push(i);
  }
  if (!sorted) order.sort((a, b) => xs[a] - xs[b]);

  for (const i of order) {
    const kind = series.kinds[i];
    const value = series.values[i];
    if (kind === FINITE && settings.log && value <= 0) {
      hidden += 1;
      continue;
    }
    if (kind !== FINITE) counts.set(kind, (counts.get(kind) ?? 0) + 1);
    trace.xs.push(xs[i]);
    trace.steps.push(series.steps[i]);
    trace.values.push(value);
    trace.kinds.push(kind);
    trace.raw.push(kind === FINITE ? value : null);
  }
  // NOTE: the average runs over the plotted points. In a downsampled series a
  // point stands for several steps, so one weight smooths more than on every row.
  if (settings.smoothing > 0) trace.smooth = smoothEma(trace.raw, settings.smoothing);
  return [trace, hidden];
}

/** Return the data attributes that describe a run's plotted points: how many, and their first and last step. */
function traceRange(trace: Trace | undefined): Record<string, number> {
  const steps = trace?.steps ?? [];
  if (!steps.length) return { "data-points": 0 };
  return { "data-points": steps.length, "data-first-step": steps[0], "data-last-step": steps[steps.length - 1] };
}

function buildData(metric: string, runs: ChartRun[], settings: ChartSettings): Built {
  const counts = new Map<number, number>();
  let hiddenNonPositive = 0;
  let points = 0;
  const traces = runs.map((run) => {
    const [trace, hidden] = buildTrace(run, metric, settings, counts);
    hiddenNonPositive += hidden;
    points += trace.xs.length;
    return trace;
  });
  // Raw first, then smoothed, so that the smoothed line is drawn on top.
  const tables: uPlot.AlignedData[] = traces.map((trace) =>
    trace.smooth ? [trace.xs, trace.raw, trace.smooth] : [trace.xs, trace.raw],
  );
  // uPlot.join aligns the runs on the union of their x values. A run's own
  // nulls stay null (a gap, and a marker); alignment fillers are undefined,
  // which uPlot draws across.
  const data = tables.length ? uPlot.join(tables) : ([[]] as unknown as uPlot.AlignedData);
  return { data, traces, counts, hiddenNonPositive, points };
}

export function withAlpha(color: string, alpha: number): string {
  const hex = color.replace("#", "");
  const r = parseInt(hex.slice(0, 2), 16);
  const g = parseInt(hex.slice(2, 4), 16);
  const b = parseInt(hex.slice(4, 6), 16);
  return `rgba(${r}, ${g}, ${b}, ${alpha})`;
}

/** Return the y axis of a chart: its colours, font, width and number labels. */
export function valueAxis(axisColor: string, gridColor: string, font: string): uPlot.Axis {
  return {
    stroke: axisColor,
    font,
    grid: { stroke: gridColor, width: 1 },
    ticks: { stroke: gridColor, width: 1, size: 4 },
    size: axisSize,
    space: 28,
    values: (_u: uPlot, splits: number[]) => splits.map((v) => (v === null || v === undefined ? "" : formatTick(v))),
  };
}

/** Keep a plot as wide as its element; return the function that stops that and removes the plot. */
export function fitToWidth(plot: uPlot, element: HTMLElement, height: number): () => void {
  const observer = new ResizeObserver(() => {
    const width = Math.max(200, element.clientWidth);
    if (Math.abs(width - plot.width) > 1) plot.setSize({ width, height });
  });
  observer.observe(element);
  return () => {
    observer.disconnect();
    plot.destroy();
  };
}

/** Give a plot new data; inside a zoomed range, keep that range rather than fit the data. */
export function showData(plot: uPlot, data: uPlot.AlignedData, zoom: XRange | null): void {
  if (zoom) {
    plot.setData(data, false);
    plot.setScale("x", { min: zoom.min, max: zoom.max });
  } else {
    plot.setData(data, true);
  }
}

/** Return the colours and font of chart axes in the current theme. */
export function chartStyle(): { axisColor: string; gridColor: string; font: string } {
  return {
    axisColor: cssVariable("--axis") || "#666",
    gridColor: cssVariable("--grid") || "rgba(128,128,128,0.15)",
    font: `12px ${getComputedStyle(document.body).fontFamily}`,
  };
}

/**
 * Return the options that every chart of values over steps or time shares: its size, scales,
 * axes, drag-to-zoom and a legend updated on hover. Callers add bands, a cursor or more hooks.
 */
export function stepChartOptions(
  element: HTMLElement,
  series: uPlot.Series[],
  settings: ChartSettings,
  syncKey: string,
  onZoom: { current(range: XRange | null): void },
  updateLegend: (u: uPlot) => void,
): uPlot.Options {
  const { axisColor, gridColor, font } = chartStyle();
  return {
    width: Math.max(200, element.clientWidth),
    height: CHART_HEIGHT,
    series,
    legend: { show: false },
    scales: {
      x: { time: settings.x === "wall" },
      y: settings.log ? { distr: 3, log: 10 } : {},
    },
    axes: [timeAxis(settings.x, axisColor, gridColor, font), valueAxis(axisColor, gridColor, font)],
    cursor: zoomCursor(syncKey, onZoom),
    hooks: {
      setSelect: [zoomOnSelect(onZoom)],
      setCursor: [(u) => updateLegend(u)],
    },
  };
}

export function cssVariable(name: string): string {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

/** Format a step for an axis: 1500 → "1.5k", 2000000 → "2M". */
export function formatStep(value: number): string {
  const magnitude = Math.abs(value);
  if (magnitude >= 1e6) return `${Number((value / 1e6).toPrecision(4))}M`;
  if (magnitude >= 1e4) return `${Number((value / 1e3).toPrecision(4))}k`;
  return String(Number(value.toPrecision(6)));
}

export function formatX(mode: XMode, value: number | null | undefined): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return "";
  if (mode === "step") return formatStep(value);
  if (mode === "wall") return formatDateTime(value * 1000);
  return formatDuration(value);
}

/** Return the index of the x nearest to `x` in ascending `xs`. */
export function nearestIndex(xs: number[], x: number): number {
  let lo = 0;
  let hi = xs.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (xs[mid] < x) lo = mid + 1;
    else hi = mid;
  }
  if (lo > 0 && Math.abs(xs[lo - 1] - x) <= Math.abs(xs[lo] - x)) return lo - 1;
  return lo;
}

/** Width (CSS px) of an axis holding `values`, so that tick labels never overlap the plot or each other. */
export function axisSize(u: uPlot, values: string[] | null, axisIndex: number, cycle: number): number {
  const axis = u.axes[axisIndex] as uPlot.Axis & { _size?: number; font: [string, number] };
  if (cycle > 1 && axis._size) return axis._size;
  let size = (axis.ticks?.size ?? 4) + (axis.gap ?? 5) + 6;
  const longest = (values ?? []).reduce((a, b) => (b && b.length > a.length ? b : a), "");
  if (longest) {
    u.ctx.font = axis.font[0];
    size += u.ctx.measureText(longest).width / (window.devicePixelRatio || 1);
  }
  return Math.ceil(size);
}

/** Minimum room (CSS px) between x ticks: the widest label at either end of the scale, plus a margin. */
function xSpace(mode: XMode) {
  return (u: uPlot, _axisIndex: number, min: number, max: number): number => {
    if (mode === "wall") return 110;
    if (!Number.isFinite(min) || !Number.isFinite(max)) return 60;
    const font = (u.axes[0] as uPlot.Axis & { font: [string, number] }).font?.[0];
    if (font) u.ctx.font = font;
    const widest = Math.max(u.ctx.measureText(formatX(mode, min)).width, u.ctx.measureText(formatX(mode, max)).width);
    return Math.max(50, widest / (window.devicePixelRatio || 1) + 28);
  };
}

/** Return the x axis of a chart against step, wall time or time since the start. */
export function timeAxis(mode: XMode, axisColor: string, gridColor: string, font: string): uPlot.Axis {
  return {
    stroke: axisColor,
    font,
    labelFont: font,
    label: X_AXIS_LABELS[mode],
    labelSize: 16,
    // Wall-time ticks take two lines when the date changes within the range.
    size: mode === "wall" ? 46 : 30,
    grid: { stroke: gridColor, width: 1 },
    ticks: { stroke: gridColor, width: 1, size: 4 },
    space: xSpace(mode),
    ...(mode === "wall" ? {} : { values: (_u: uPlot, splits: number[]) => splits.map((v) => formatX(mode, v)) }),
  };
}

/** Return the cursor of a chart that zooms: synced with the other charts, drag across x to zoom, double-click to reset. */
export function zoomCursor(syncKey: string, onZoom: { current(range: XRange | null): void }): uPlot.Cursor {
  return {
    // Only the vertical line: a horizontal one means nothing in the charts it is synced to.
    y: false,
    sync: { key: syncKey, setSeries: false },
    drag: { x: true, y: false, setScale: false },
    points: { size: 6 },
    bind: {
      dblclick: () => () => {
        onZoom.current(null);
        return null;
      },
    },
  };
}

/** Return the setSelect hook that turns a dragged selection into a zoom request and clears it. */
export function zoomOnSelect(onZoom: { current(range: XRange | null): void }): (u: uPlot) => void {
  return (u) => {
    if (u.select.width < 5) return;
    const min = u.posToVal(u.select.left, "x");
    const max = u.posToVal(u.select.left + u.select.width, "x");
    u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
    onZoom.current({ min, max });
  };
}

function drawGlyph(ctx: CanvasRenderingContext2D, kind: number, x: number, y: number, size: number): void {
  ctx.beginPath();
  if (kind === POS_INF) {
    ctx.moveTo(x, y - size);
    ctx.lineTo(x + size, y + size);
    ctx.lineTo(x - size, y + size);
    ctx.closePath();
    ctx.fill();
  } else if (kind === NEG_INF) {
    ctx.moveTo(x, y + size);
    ctx.lineTo(x + size, y - size);
    ctx.lineTo(x - size, y - size);
    ctx.closePath();
    ctx.fill();
  } else if (kind === NAN) {
    ctx.moveTo(x - size, y - size);
    ctx.lineTo(x + size, y + size);
    ctx.moveTo(x + size, y - size);
    ctx.lineTo(x - size, y + size);
    ctx.stroke();
  } else {
    ctx.arc(x, y, size * 0.85, 0, 2 * Math.PI);
    ctx.stroke();
  }
}

/** Draw NaN, ±Inf and null points in lanes at the plot's top (bottom for −Inf), at their x. */
function drawMarkers(u: uPlot, traces: Trace[]): void {
  const ctx = u.ctx;
  const { left, top, width, height } = u.bbox;
  const xMin = u.scales.x.min ?? -Infinity;
  const xMax = u.scales.x.max ?? Infinity;
  const ratio = window.devicePixelRatio || 1;
  const size = 4.5 * ratio;

  ctx.save();
  ctx.beginPath();
  // As wide as a glyph beyond each side, so a marker at the first or last x is drawn whole.
  const margin = size + 1.5 * ratio;
  ctx.rect(left - margin, top, width + 2 * margin, height);
  ctx.clip();
  ctx.lineWidth = 1.5 * ratio;

  for (const trace of traces) {
    ctx.strokeStyle = trace.run.color;
    ctx.fillStyle = trace.run.color;
    let lastX = -Infinity;
    let lastKind = -1;
    for (let i = 0; i < trace.kinds.length; i++) {
      const kind = trace.kinds[i];
      if (kind === FINITE) continue;
      const x = trace.xs[i];
      if (x < xMin || x > xMax) continue;

      const px = u.valToPos(x, "x", true);
      // Neighbouring markers of one kind closer than a glyph would overprint each other.
      if (kind === lastKind && px - lastX < size * 1.5) continue;
      lastX = px;
      lastKind = kind;

      const py = kind === NEG_INF ? top + height - size - 2 * ratio : top + size + 2 * ratio;
      drawGlyph(ctx, kind, px, py, size);
    }
  }

  ctx.restore();
}

const MARKER_SYMBOLS: Record<number, string> = { [POS_INF]: "▲", [NEG_INF]: "▼", [NAN]: "✕", [MISSING]: "○" };

function markerNote(counts: Map<number, number>): string {
  return [POS_INF, NEG_INF, NAN, MISSING]
    .filter((kind) => counts.get(kind))
    .map((kind) => `${MARKER_SYMBOLS[kind]} ${counts.get(kind)} ${KIND_LABELS[kind]}`)
    .join(" · ");
}

const MARKER_HELP =
  "Points that cannot be drawn are marked: ▲ +Inf at the top, ▼ −Inf at the bottom, ✕ NaN and ○ null at the top. " +
  "“null” is a missing value where this metric is otherwise logged: expman-rs 1.3 stores NaN and ±Inf as null " +
  "once a run is closed, and live updates arrive as JSON, which has no NaN.";

export interface MetricChartProps {
  metric: string;
  runs: ChartRun[];
  settings: ChartSettings;
  zoom: XRange | null;
  onZoom(range: XRange | null): void;
  /** Changes whenever any run's rows changed. */
  dataVersion: number;
  syncKey: string;
  theme: string;
  /** Switch this chart to each group's mean and band; absent when the runs are not grouped. */
  onAggregate?(): void;
}

/** Render the button in a chart's title that switches between the runs and their groups' means. */
export function AggregateToggle({ aggregated, onClick }: { aggregated: boolean; onClick(): void }) {
  return (
    <button
      type="button"
      class={aggregated ? "chart-toggle on" : "chart-toggle"}
      aria-pressed={aggregated}
      data-testid="aggregate-toggle"
      title={aggregated ? "Show each run's line" : "Show each group's mean with a band"}
      onClick={onClick}
    >
      group means
    </button>
  );
}

export function MetricChart(props: MetricChartProps) {
  const { metric, runs, settings, zoom, dataVersion, syncKey, theme } = props;
  const plotRef = useRef<HTMLDivElement>(null);
  const legendRef = useRef<HTMLDivElement>(null);
  const chart = useRef<uPlot | null>(null);
  const onZoom = useRef(props.onZoom);
  onZoom.current = props.onZoom;

  const built = useMemo(() => buildData(metric, runs, settings), [metric, runs, settings, dataVersion]);
  const builtRef = useRef(built);
  builtRef.current = built;

  const structure = [theme, metric, settings.x, settings.smoothing > 0, settings.log, ...runs.map((run) => run.key + run.color)].join("\u0001");

  // The legend follows the cursor's position rather than its data index:
  // the index is stale for a moment after new data arrives.
  const updateLegend = (u: uPlot | null) => {
    const legend = legendRef.current;
    if (!legend) return;
    const { traces } = builtRef.current;
    const left = u?.cursor.left;
    const position = u && left !== undefined && left >= 0 ? u.posToVal(left, "x") : NaN;
    const cursorX = Number.isFinite(position) ? position : null;
    const header = legend.querySelector<HTMLElement>(".legend-x");
    if (header) {
      if (cursorX === null) header.textContent = "latest values";
      else if (settings.x === "step") header.textContent = "nearest points";
      else header.textContent = settings.x === "wall" ? formatX("wall", cursorX) : `${formatX("relative", cursorX)} after the start`;
    }
    const rows = legend.querySelectorAll<HTMLElement>(".legend-row");
    traces.forEach((trace, t) => {
      const row = rows[t];
      if (!row) return;
      const valueCell = row.querySelector<HTMLElement>(".legend-value")!;
      const stepCell = row.querySelector<HTMLElement>(".legend-step")!;
      if (!trace.xs.length) {
        valueCell.textContent = "no values";
        stepCell.textContent = "";
        return;
      }
      const i = cursorX === null ? trace.xs.length - 1 : nearestIndex(trace.xs, cursorX);
      const kind = trace.kinds[i];
      let text = kind === FINITE ? formatNumber(trace.values[i]) : KIND_LABELS[kind];
      if (trace.smooth && kind === FINITE) text = `${formatNumber(trace.smooth[i])} (raw ${text})`;
      valueCell.textContent = text;
      valueCell.classList.toggle("special", kind !== FINITE);
      stepCell.textContent = `step ${formatNumber(trace.steps[i])}`;
    });
  };

  // Create the chart when its structure changes (runs, axis kind, smoothing on/off, scale, theme).
  useEffect(() => {
    const element = plotRef.current;
    if (!element) return;
    const series: uPlot.Series[] = [{}];
    const showDots = (_u: uPlot, seriesIndex: number) => {
      const perRun = settings.smoothing > 0 ? 2 : 1;
      const trace = builtRef.current.traces[Math.floor((seriesIndex - 1) / perRun)];
      return trace !== undefined && trace.xs.length < DOTS_BELOW;
    };
    for (const run of runs) {
      if (settings.smoothing > 0) {
        series.push({ label: `${run.label} (raw)`, stroke: withAlpha(run.color, 0.28), width: 1, points: { show: false } });
        series.push({ label: run.label, stroke: run.color, width: 1.75, points: { show: showDots, size: 5, fill: run.color } });
      } else {
        series.push({ label: run.label, stroke: run.color, width: 1.5, points: { show: showDots, size: 5, fill: run.color } });
      }
    }
    const base = stepChartOptions(element, series, settings, syncKey, onZoom, updateLegend);
    const options: uPlot.Options = {
      ...base,
      hooks: { ...base.hooks, draw: [(u) => drawMarkers(u, builtRef.current.traces)] },
    };
    const plot = new uPlot(options, builtRef.current.data, element);
    chart.current = plot;
    const remove = fitToWidth(plot, element, CHART_HEIGHT);
    return () => {
      remove();
      chart.current = null;
    };
  }, [structure, syncKey]);

  // New rows or a new zoom: give the chart its data and x range.
  useEffect(() => {
    const plot = chart.current;
    if (!plot) return;
    showData(plot, built.data, zoom);
    updateLegend(plot);
  }, [built, zoom, structure]);

  const note = markerNote(built.counts);
  return (
    <div class="chart-card" data-metric={metric}>
      <div class="chart-title">
        <span class="chart-name" title={metric}>
          {metric}
        </span>
        {note && (
          <span class="chart-note" title={MARKER_HELP} data-testid="marker-note">
            {note}
          </span>
        )}
        {built.hiddenNonPositive > 0 && (
          <span class="chart-note info" title="A log scale cannot show zero or negative values">
            {built.hiddenNonPositive} values ≤ 0 not shown
          </span>
        )}
        {props.onAggregate && <AggregateToggle aggregated={false} onClick={props.onAggregate} />}
        <ExportMenu metric={metric} runs={runs} />
      </div>
      <div class="chart-plot" ref={plotRef} data-points={built.points} />
      {built.points === 0 && <div class="chart-empty">No values to plot for the shown runs.</div>}
      <div class="chart-legend" ref={legendRef}>
        <div class="legend-x muted">latest values</div>
        {runs.map((run, index) => (
          <div class="legend-row" key={run.key} data-run={run.key} {...traceRange(built.traces[index])}>
            <span class="swatch" style={{ background: run.color }} />
            <span class="legend-label" title={run.label}>
              {run.label}
            </span>
            <span class="legend-value" />
            <span class="legend-step muted" />
          </div>
        ))}
      </div>
    </div>
  );
}
