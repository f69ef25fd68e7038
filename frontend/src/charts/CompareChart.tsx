// One metric plotted against another (or against the step) for each of the
// compared runs, as lines in step order: accuracy against epoch, loss against
// learning rate. Runs still training extend their line live.

import { useEffect, useMemo, useRef } from "preact/hooks";
import uPlot from "uplot";

import { LiveBadge } from "../components/common";
import { formatNumber } from "../format";
import { pairByStep, type Pairs } from "./aggregate";
import { useSessions, useSessionsVersion } from "./ChartsPanel";
import { chartStyle, fitToWidth, formatStep, valueAxis } from "./MetricChart";
import { useTheme } from "./theme";

const CHART_HEIGHT = 320;
/** Below this many points a line also shows its points as dots. */
const DOTS_BELOW = 60;

export interface CompareChartRun {
  id: string;
  label: string;
  color: string;
}

export interface CompareChartProps {
  experiment: string;
  runs: CompareChartRun[];
  /** The metric on the x axis; null for the step. */
  xMetric: string | null;
  yMetric: string;
}

/**
 * Return a uPlot path builder that joins a series' points in data order.
 * uPlot 1.6's linear builder merges dense points per x pixel column, which
 * assumes x ascending, and a metric on the x axis (a loss) need not be.
 */
function polyline(dots: boolean): uPlot.Series.PathBuilder {
  return (u, seriesIndex) => {
    const [xs, ys] = u.data[seriesIndex] as unknown as [number[], number[]];
    const stroke = new Path2D();
    const radius = 2.5 * (window.devicePixelRatio || 1);
    for (let i = 0; i < xs.length; i++) {
      const px = u.valToPos(xs[i], "x", true);
      const py = u.valToPos(ys[i], "y", true);
      if (i === 0) stroke.moveTo(px, py);
      else stroke.lineTo(px, py);
      if (dots) {
        stroke.moveTo(px + radius, py);
        stroke.arc(px, py, radius, 0, 2 * Math.PI);
        stroke.moveTo(px, py);
      }
    }
    return { stroke, fill: null, clip: null, flags: 0 };
  };
}

/** Return the index of the point of `pairs` nearest to the pixel (`left`, `top`) of the plot. */
function nearestPoint(u: uPlot, pairs: Pairs, left: number, top: number): number {
  let best = -1;
  let bestDistance = Infinity;
  for (let i = 0; i < pairs.xs.length; i++) {
    const dx = u.valToPos(pairs.xs[i], "x") - left;
    const dy = u.valToPos(pairs.ys[i], "y") - top;
    const distance = dx * dx + dy * dy;
    if (distance < bestDistance) {
      bestDistance = distance;
      best = i;
    }
  }
  return best;
}

export function CompareChart(props: CompareChartProps) {
  const { experiment, runs, xMetric, yMetric } = props;
  const ids = useMemo(() => runs.map((run) => run.id), [runs.map((run) => run.id).join("\u0001")]);
  const sessions = useSessions(experiment, ids);
  const version = useSessionsVersion(sessions);
  const theme = useTheme();
  const plotRef = useRef<HTMLDivElement>(null);
  const legendRef = useRef<HTMLDivElement>(null);
  const chart = useRef<uPlot | null>(null);

  const pairs: Pairs[] = useMemo(
    () =>
      sessions.map((session) => {
        const metrics = session.metrics;
        if (!metrics) return { xs: [], ys: [], steps: [], skipped: 0 };
        return pairByStep(xMetric === null ? null : metrics.series(xMetric), metrics.series(yMetric));
      }),
    [sessions, version, xMetric, yMetric],
  );
  const pairsRef = useRef(pairs);
  pairsRef.current = pairs;
  const sessionsRef = useRef(sessions);
  sessionsRef.current = sessions;
  const points = pairs.reduce((total, line) => total + line.xs.length, 0);
  const skipped = pairs.reduce((total, line) => total + line.skipped, 0);
  const data = useMemo(() => [null, ...pairs.map((line) => [line.xs, line.ys])] as unknown as uPlot.AlignedData, [pairs]);
  const few = pairs.every((line) => line.xs.length < DOTS_BELOW);

  // The legend shows, per run, its point nearest to the cursor, or its last point.
  const updateLegend = (u: uPlot | null) => {
    const legend = legendRef.current;
    if (!legend) return;
    const left = u?.cursor.left ?? -1;
    const top = u?.cursor.top ?? -1;
    const rows = legend.querySelectorAll<HTMLElement>(".legend-row");
    pairsRef.current.forEach((line, index) => {
      const value = rows[index]?.querySelector<HTMLElement>(".legend-value");
      if (!value) return;
      if (!line.xs.length) {
        // A run whose rows are still loading has no points yet, which is not the same as none.
        value.textContent = sessionsRef.current[index]?.metrics ? "no points" : "";
        return;
      }
      const i = u && left >= 0 && top >= 0 ? nearestPoint(u, line, left, top) : line.xs.length - 1;
      const xText = xMetric === null ? "" : `${xMetric} ${formatNumber(line.xs[i])} · `;
      value.textContent = `${xText}${yMetric} ${formatNumber(line.ys[i])} · step ${formatNumber(line.steps[i])}`;
    });
    const header = legend.querySelector<HTMLElement>(".legend-x");
    if (header) header.textContent = u && left >= 0 ? "nearest points" : "last points";
  };

  const structure = [theme, xMetric, yMetric, few, ...runs.map((run) => run.id + run.color)].join("\u0001");

  useEffect(() => {
    const element = plotRef.current;
    if (!element) return;
    const { axisColor, gridColor, font } = chartStyle();
    const xAxis: uPlot.Axis = {
      ...valueAxis(axisColor, gridColor, font),
      size: 30,
      label: xMetric ?? "step",
      labelFont: font,
      labelSize: 16,
      space: 60,
    };
    if (xMetric === null) xAxis.values = (_u: uPlot, splits: number[]) => splits.map((v) => formatStep(v));
    const yAxis: uPlot.Axis = { ...valueAxis(axisColor, gridColor, font), label: yMetric, labelFont: font, labelSize: 16 };
    const options: uPlot.Options = {
      mode: 2,
      width: Math.max(200, element.clientWidth),
      height: CHART_HEIGHT,
      legend: { show: false },
      scales: { x: { time: false } },
      series: [
        {},
        ...runs.map((run) => ({
          label: run.label,
          stroke: run.color,
          width: 1.5,
          paths: polyline(few),
          points: { show: false },
          facets: [
            { scale: "x", auto: true },
            { scale: "y", auto: true },
          ],
        })),
      ] as uPlot.Series[],
      axes: [xAxis, yAxis],
      cursor: { points: { show: false }, drag: { x: true, y: true } },
      hooks: { setCursor: [(u) => updateLegend(u)] },
    };
    const plot = new uPlot(options, data, element);
    chart.current = plot;
    const remove = fitToWidth(plot, element, CHART_HEIGHT);
    updateLegend(null);
    return () => {
      remove();
      chart.current = null;
    };
  }, [structure]);

  useEffect(() => {
    const plot = chart.current;
    if (!plot) return;
    plot.setData(data, true);
    updateLegend(plot.cursor.left !== undefined && plot.cursor.left >= 0 ? plot : null);
  }, [data, structure]);

  const loading = sessions.some((session) => !session.metrics && !session.metricsError && !session.error);
  return (
    <div class="chart-card compare-chart" data-testid="compare-chart" data-x={xMetric ?? "step"} data-y={yMetric}>
      <div class="chart-title">
        <span class="chart-name">
          {yMetric} against {xMetric ?? "step"}
        </span>
        {loading && <span class="chart-note info">loading…</span>}
        {skipped > 0 && (
          <span class="chart-note info" title="Points whose y value is NaN, ±Inf or null, or that have no x value at or before their step">
            {skipped} points not drawn
          </span>
        )}
      </div>
      <div class="chart-plot" ref={plotRef} data-points={points} />
      {!loading && points === 0 && <div class="chart-empty">No run has points of both {yMetric} and {xMetric ?? "step"}.</div>}
      <div class="chart-legend" ref={legendRef}>
        <div class="legend-x muted">last points</div>
        {runs.map((run, index) => (
          <div class="legend-row" key={run.id} data-run={run.id} data-points={pairs[index]?.xs.length ?? 0}>
            <span class="swatch" style={{ background: run.color }} />
            <span class="legend-label" title={run.label}>
              {run.label}
            </span>
            <span class="legend-value" />
            <span class="legend-step">
              <LiveBadge state={sessions[index]?.isLive ? sessions[index].liveState : "off"} />
            </span>
          </div>
        ))}
      </div>
    </div>
  );
}
