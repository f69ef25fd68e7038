// One metric's chart with the runs grouped: each group drawn as the mean of
// its runs, with a band of their min–max or mean ± standard deviation, in
// the group's colour. Zoom, smoothing, log scale and the x axis work as in
// MetricChart; live runs extend their group's line.

import { useEffect, useMemo, useRef } from "preact/hooks";
import uPlot from "uplot";

import { formatNumber } from "../format";
import { aggregateLines, type Aggregate, type BandKind, type Line } from "./aggregate";
import { FINITE } from "./data";
import {
  AggregateToggle,
  CHART_HEIGHT,
  fitToWidth,
  formatX,
  nearestIndex,
  showData,
  stepChartOptions,
  withAlpha,
  xMapping,
  type ChartRun,
  type ChartSettings,
  type XRange,
} from "./MetricChart";
import { smoothEma } from "./smoothing";

/** Runs that share a group value, drawn as one mean line and band. */
export interface ChartGroup {
  key: string;
  label: string;
  /** Whether this is the group of the runs without a value (its label is no value). */
  none: boolean;
  color: string;
  runs: ChartRun[];
}

export interface AggregateChartProps {
  metric: string;
  groups: ChartGroup[];
  band: BandKind;
  settings: ChartSettings;
  zoom: XRange | null;
  onZoom(range: XRange | null): void;
  /** Changes whenever any run's rows changed. */
  dataVersion: number;
  syncKey: string;
  theme: string;
  /** Switch back to one line per run. */
  onAggregate(): void;
}

/** Uplot series per group: the mean, then the band's lower and upper edges. */
const SERIES_PER_GROUP = 3;

interface BuiltGroups {
  data: uPlot.AlignedData;
  aggregates: Aggregate[];
  /** Points of the groups' runs left out: NaN, ±Inf and null, and values ≤ 0 on a log scale. */
  skipped: number;
  points: number;
}

/** Return a run's finite points of `metric` as a line in x order, smoothed when the settings ask for it. */
function runLine(run: ChartRun, metric: string, settings: ChartSettings): { line: Line; skipped: number } {
  const line: Line = { xs: [], ys: [] };
  const series = run.metrics?.series(metric);
  if (!series) return { line, skipped: 0 };
  let origin = run.startMs;
  if (origin === null) origin = series.times.find((time) => Number.isFinite(time)) ?? 0;
  const toX = xMapping(settings.x, origin);
  const points: [number, number][] = [];
  let skipped = 0;
  for (let i = 0; i < series.steps.length; i++) {
    const x = toX(series.steps[i], series.times[i]);
    const value = series.values[i];
    if (series.kinds[i] !== FINITE || !Number.isFinite(x) || (settings.log && value <= 0)) {
      skipped += 1;
      continue;
    }
    points.push([x, value]);
  }
  points.sort((a, b) => a[0] - b[0]);
  line.xs = points.map((point) => point[0]);
  line.ys = points.map((point) => point[1]);
  // Each run is smoothed on its own before the mean, as its own line would be.
  if (settings.smoothing > 0) line.ys = smoothEma(line.ys, settings.smoothing).map((value, i) => value ?? line.ys[i]);
  return { line, skipped };
}

function buildGroups(metric: string, groups: ChartGroup[], band: BandKind, settings: ChartSettings): BuiltGroups {
  let skipped = 0;
  let points = 0;
  const aggregates = groups.map((group) => {
    const lines = group.runs.map((run) => {
      const result = runLine(run, metric, settings);
      skipped += result.skipped;
      return result.line;
    });
    const aggregate = aggregateLines(lines, band);
    points += aggregate.xs.length;
    return aggregate;
  });
  const tables: uPlot.AlignedData[] = aggregates.map((aggregate) => [aggregate.xs, aggregate.mean, aggregate.lower, aggregate.upper]);
  const data = tables.length ? uPlot.join(tables) : ([[]] as unknown as uPlot.AlignedData);
  return { data, aggregates, skipped, points };
}

/** Describe a group's value at one x for the legend: the mean and the band's edges. */
function describePoint(aggregate: Aggregate, index: number, band: BandKind): string {
  const mean = aggregate.mean[index];
  const lower = aggregate.lower[index];
  const upper = aggregate.upper[index];
  if (mean === null || lower === null || upper === null) return "no values";
  if (band === "std") return `mean ${formatNumber(mean)} ± ${formatNumber(upper - mean)}`;
  return `mean ${formatNumber(mean)} (${formatNumber(lower)} – ${formatNumber(upper)})`;
}

/**
 * Return the index of a group's point to describe at the cursor. Return null
 * when the cursor lies past the group's last point or before its first one,
 * by more than half its mean spacing, because the group has no run there.
 */
function pointAtCursor(xs: number[], cursorX: number): number | null {
  const n = xs.length;
  const halfGap = n > 1 ? (xs[n - 1] - xs[0]) / (n - 1) / 2 : 0;
  if (cursorX > xs[n - 1] + halfGap || cursorX < xs[0] - halfGap) return null;
  return nearestIndex(xs, cursorX);
}

/**
 * Return the data index of a series' cursor point: the nearest one with a
 * value, as uPlot does by default. Outside the series' group it returns
 * `closest`, whose value is empty, so an ended group shows no point.
 */
function groupPointIndex(u: uPlot, built: BuiltGroups, series: number, closest: number, x: number): number {
  const aggregate = built.aggregates[Math.floor((series - 1) / SERIES_PER_GROUP)];
  if (!aggregate || !aggregate.xs.length || pointAtCursor(aggregate.xs, x) === null) return closest;
  const values = u.data[series];
  for (let offset = 0; offset < values.length; offset++) {
    if (values[closest - offset] != null) return closest - offset;
    if (values[closest + offset] != null) return closest + offset;
  }
  return closest;
}

export function AggregateChart(props: AggregateChartProps) {
  const { metric, groups, band, settings, zoom, dataVersion, syncKey, theme } = props;
  const plotRef = useRef<HTMLDivElement>(null);
  const legendRef = useRef<HTMLDivElement>(null);
  const chart = useRef<uPlot | null>(null);
  const onZoom = useRef(props.onZoom);
  onZoom.current = props.onZoom;

  const built = useMemo(() => buildGroups(metric, groups, band, settings), [metric, groups, band, settings, dataVersion]);
  const builtRef = useRef(built);
  builtRef.current = built;

  const structure = [theme, metric, band, settings.x, settings.log, ...groups.map((group) => group.key + group.color)].join("\u0001");

  const updateLegend = (u: uPlot | null) => {
    const legend = legendRef.current;
    if (!legend) return;
    const left = u?.cursor.left;
    const position = u && left !== undefined && left >= 0 ? u.posToVal(left, "x") : NaN;
    const cursorX = Number.isFinite(position) ? position : null;
    const header = legend.querySelector<HTMLElement>(".legend-x");
    if (header) {
      if (cursorX === null) header.textContent = "latest values";
      else if (settings.x === "step") header.textContent = `near step ${formatX("step", Math.round(cursorX))}`;
      else header.textContent = settings.x === "wall" ? formatX("wall", cursorX) : `${formatX("relative", cursorX)} after the start`;
    }
    const rows = legend.querySelectorAll<HTMLElement>(".legend-row");
    builtRef.current.aggregates.forEach((aggregate, g) => {
      const row = rows[g];
      if (!row) return;
      const valueCell = row.querySelector<HTMLElement>(".legend-value")!;
      const countCell = row.querySelector<HTMLElement>(".legend-step")!;
      // The latest x with a value, or the x nearest the cursor.
      let i = aggregate.xs.length - 1;
      while (i >= 0 && aggregate.mean[i] === null) i--;
      row.classList.remove("ended");
      if (cursorX !== null && aggregate.xs.length) {
        const at = pointAtCursor(aggregate.xs, cursorX);
        if (at === null) {
          const ended = cursorX > aggregate.xs[aggregate.xs.length - 1];
          const edge = ended ? aggregate.xs[aggregate.xs.length - 1] : aggregate.xs[0];
          row.classList.add("ended");
          valueCell.textContent = "—";
          countCell.textContent = `${ended ? "ended" : "starts"} at ${formatX(settings.x, edge)}`;
          return;
        }
        i = at;
      }
      if (i < 0) {
        valueCell.textContent = "no values";
        countCell.textContent = "";
        return;
      }
      valueCell.textContent = describePoint(aggregate, i, band);
      const runs = aggregate.counts[i];
      countCell.textContent = `${runs} ${runs === 1 ? "run" : "runs"} at ${formatX(settings.x, aggregate.xs[i])}`;
    });
  };

  // Create the chart when its structure changes (groups, band kind, axis kind, scale, theme).
  useEffect(() => {
    const element = plotRef.current;
    if (!element) return;
    const series: uPlot.Series[] = [{}];
    const bands: uPlot.Band[] = [];
    groups.forEach((group, g) => {
      const edge = (label: string): uPlot.Series => ({ label, stroke: withAlpha(group.color, 0.45), width: 1, points: { show: false } });
      series.push({ label: `${group.label} mean`, stroke: group.color, width: 2, points: { show: false } });
      series.push(edge(`${group.label} lower`));
      series.push(edge(`${group.label} upper`));
      const mean = 1 + g * SERIES_PER_GROUP;
      bands.push({ series: [mean + 2, mean + 1], fill: withAlpha(group.color, 0.18) });
    });
    const base = stepChartOptions(element, series, settings, syncKey, onZoom, updateLegend);
    const options: uPlot.Options = {
      ...base,
      bands,
      cursor: { ...base.cursor, dataIdx: (u, series, closest, x) => groupPointIndex(u, builtRef.current, series, closest, x) },
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

  return (
    <div class="chart-card aggregate-chart" data-metric={metric} data-band={band}>
      <div class="chart-title">
        <span class="chart-name" title={metric}>
          {metric}
        </span>
        <span class="chart-note info">mean per group, band {band === "std" ? "± 1 std" : "min–max"}</span>
        {built.skipped > 0 && (
          <span class="chart-note info" title="NaN, ±Inf and null values are left out of the mean and band, as are values ≤ 0 on a log scale">
            {built.skipped} values left out
          </span>
        )}
        <AggregateToggle aggregated onClick={props.onAggregate} />
      </div>
      <div class="chart-plot" ref={plotRef} data-points={built.points} />
      {built.points === 0 && <div class="chart-empty">No values to plot for the shown runs.</div>}
      <div class="chart-legend" ref={legendRef}>
        <div class="legend-x muted">latest values</div>
        {groups.map((group) => (
          <div class="legend-row" key={group.key} data-group={group.key} data-runs={group.runs.length}>
            <span class="swatch band-swatch" style={{ background: group.color, boxShadow: `0 0 0 3px ${withAlpha(group.color, 0.25)}` }} />
            <span class="legend-label" title={`${group.label}: ${group.runs.map((run) => run.label).join(", ")}`}>
              <span class={group.none ? "group-none" : undefined}>{group.label}</span>{" "}
              <span class="legend-runs muted">({group.runs.length === 1 ? "1 run" : `${group.runs.length} runs`})</span>
            </span>
            <span class="legend-value" />
            <span class="legend-step muted" />
          </div>
        ))}
      </div>
    </div>
  );
}
