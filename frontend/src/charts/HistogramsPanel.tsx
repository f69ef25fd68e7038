// The histograms of one run: per tag, the distribution over steps as
// percentile bands (5–95 %, 25–75 %), the median line and the min and max,
// with the histogram at the step under the cursor drawn as bars below.

import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import uPlot from "uplot";

import { describeError, getJson, runUrl, withQuery } from "../api";
import { Message } from "../components/common";
import { formatNumber } from "../format";
import { updateQuery } from "../router";
import type { RunSession } from "../session";
import type { Histogram, HistogramsByTag } from "../types";
import { chartStyle, fitToWidth, formatStep, valueAxis, withAlpha } from "./MetricChart";
import { finiteEdges, QUANTILES, summarizeAll, type Summary } from "./percentiles";
import { useTheme } from "./theme";

/** Histograms per tag asked from the server (`max_steps`), evenly spread over the logged steps. */
export const MAX_HISTOGRAM_STEPS = 500;

/** A tag's chart fetches again at most this often while new histograms arrive (ms). */
const REFETCH_INTERVAL_MS = 1000;

const CHART_HEIGHT = 220;
/** Below this many steps the median is drawn with dots, so a single step stays visible. */
const DOTS_BELOW = 60;
const COLOR = "#3b82f6";

/** Series index of each of `QUANTILES` in the chart's data (0 is the step). */
const MIN = 1;
const P5 = 2;
const P25 = 3;
const MEDIAN = 4;
const P75 = 5;
const P95 = 6;
const MAX = 7;

interface Loaded {
  summaries: Summary[];
  /** The histogram of each summary, for the bars of the step under the cursor. */
  histograms: Histogram[];
  /** Histograms the server sent; fewer than logged when it spread them to `MAX_HISTOGRAM_STEPS`. */
  received: number;
}

/** Fetch a tag's histograms when `version` changes, at most once per `REFETCH_INTERVAL_MS`. */
function useHistograms(experiment: string, run: string, tag: string, version: number) {
  const [state, setState] = useState<{ data?: Loaded; error?: unknown }>({});
  const lastFetch = useRef(0);
  useEffect(() => {
    const controller = new AbortController();
    const delay = Math.max(0, lastFetch.current + REFETCH_INTERVAL_MS - Date.now());
    const timer = window.setTimeout(() => {
      lastFetch.current = Date.now();
      const url = withQuery(runUrl(experiment, run, "histograms"), { tag, max_steps: MAX_HISTOGRAM_STEPS });
      getJson<HistogramsByTag>(url, controller.signal).then(
        (byTag) => {
          const received = byTag[tag] ?? [];
          const summaries = summarizeAll(received);
          const byStep = new Map<number, Histogram>();
          for (const histogram of received) if (typeof histogram.step === "number") byStep.set(histogram.step, histogram);
          setState({ data: { summaries, histograms: summaries.map((summary) => byStep.get(summary.step)!), received: received.length } });
        },
        (error) => {
          if (!controller.signal.aborted) setState((previous) => ({ data: previous.data, error }));
        },
      );
    }, delay);
    return () => {
      window.clearTimeout(timer);
      controller.abort();
    };
  }, [experiment, run, tag, version]);
  return state;
}

function chartData(summaries: Summary[]): uPlot.AlignedData {
  const columns: number[][] = [summaries.map((summary) => summary.step)];
  for (let q = 0; q < QUANTILES.length; q++) columns.push(summaries.map((summary) => summary.values[q]));
  return columns as uPlot.AlignedData;
}

/** Draw one histogram as bars, its x axis spanning the finite edges. */
function Bars({ histogram }: { histogram: Histogram }) {
  const edges = finiteEdges(histogram.edges ?? []);
  const counts = histogram.counts ?? [];
  if (!edges || edges.length !== counts.length + 1 || edges.length < 2) return null;
  const low = edges[0];
  const high = edges[edges.length - 1];
  const span = high - low || 1;
  const largest = Math.max(1, ...counts);
  const width = 300;
  const height = 60;
  return (
    <div class="histogram-bars">
      <svg viewBox={`0 0 ${width} ${height}`} preserveAspectRatio="none" role="img" aria-label={`Histogram at step ${histogram.step}`}>
        {counts.map((count, i) => {
          const x = ((edges[i] - low) / span) * width;
          const w = Math.max(0.5, ((edges[i + 1] - edges[i]) / span) * width - 0.5);
          const h = (count / largest) * height;
          return <rect key={i} x={x} y={height - h} width={w} height={h} />;
        })}
      </svg>
      <div class="histogram-bars-axis muted">
        <span>{formatNumber(low)}</span>
        <span>{formatNumber(high)}</span>
      </div>
    </div>
  );
}

/** Return a summary's value for a series index of the chart (`MIN` … `MAX`). */
function valueOf(summary: Summary, series: number): number {
  return summary.values[series - 1];
}

function rangeText(summary: Summary, low: number, high: number): string {
  return `${formatNumber(valueOf(summary, low))} to ${formatNumber(valueOf(summary, high))}`;
}

function HistogramCard(props: { experiment: string; run: string; tag: string; version: number; theme: string }) {
  const { experiment, run, tag, version, theme } = props;
  const { data, error } = useHistograms(experiment, run, tag, version);
  const plotRef = useRef<HTMLDivElement>(null);
  const chart = useRef<uPlot | null>(null);
  // The index of the step under the cursor; null shows the last step.
  const [cursor, setCursor] = useState<number | null>(null);
  const summaries = data?.summaries ?? [];
  const plotData = useMemo(() => chartData(summaries), [data]);
  const few = summaries.length < DOTS_BELOW;

  useEffect(() => {
    const element = plotRef.current;
    if (!element || !data) return;
    const { axisColor, gridColor, font } = chartStyle();
    const edge = (label: string): uPlot.Series => ({ label, stroke: withAlpha(COLOR, 0.45), width: 1, points: { show: false } });
    const extreme = (label: string): uPlot.Series => ({ label, stroke: withAlpha(COLOR, 0.45), width: 1, dash: [4, 4], points: { show: false } });
    const options: uPlot.Options = {
      width: Math.max(200, element.clientWidth),
      height: CHART_HEIGHT,
      legend: { show: false },
      series: [
        {},
        extreme("min"),
        edge("5 %"),
        edge("25 %"),
        { label: "median", stroke: COLOR, width: 2, points: { show: few, size: 5, fill: COLOR } },
        edge("75 %"),
        edge("95 %"),
        extreme("max"),
      ],
      bands: [
        { series: [P95, P5], fill: withAlpha(COLOR, 0.14) },
        { series: [P75, P25], fill: withAlpha(COLOR, 0.26) },
      ],
      scales: { x: { time: false } },
      axes: [
        {
          stroke: axisColor,
          font,
          labelFont: font,
          label: "step",
          labelSize: 16,
          size: 30,
          grid: { stroke: gridColor, width: 1 },
          ticks: { stroke: gridColor, width: 1, size: 4 },
          values: (_u: uPlot, splits: number[]) => splits.map((v) => formatStep(v)),
        },
        valueAxis(axisColor, gridColor, font),
      ],
      cursor: { y: false, drag: { x: true, y: false }, points: { show: false } },
      hooks: {
        setCursor: [
          (u) => {
            const index = u.cursor.idx;
            setCursor(index === null || index === undefined ? null : index);
          },
        ],
      },
    };
    const plot = new uPlot(options, plotData, element);
    chart.current = plot;
    const remove = fitToWidth(plot, element, CHART_HEIGHT);
    return () => {
      remove();
      chart.current = null;
    };
    // The chart is made again when dots are switched or the theme changes; new data goes through setData below.
  }, [theme, few, data !== undefined]);

  useEffect(() => {
    chart.current?.setData(plotData, true);
  }, [plotData]);

  const index = cursor !== null && cursor < summaries.length ? cursor : summaries.length - 1;
  const shown = index >= 0 ? summaries[index] : null;
  const histogram = index >= 0 ? data?.histograms[index] : undefined;

  return (
    <div class="chart-card histogram-card" data-tag={tag} data-steps={summaries.length}>
      <div class="chart-title">
        <span class="chart-name" title={tag}>
          {tag}
        </span>
        {data && (
          <span class="chart-note info">
            {summaries.length} {summaries.length === 1 ? "step" : "steps"}
            {data.received >= MAX_HISTOGRAM_STEPS ? ` (at most ${MAX_HISTOGRAM_STEPS}, evenly spread)` : ""}
          </span>
        )}
      </div>
      {error !== undefined && <div class="inline-error small">Cannot load the histograms of {tag}: {describeError(error)}</div>}
      {!data && error === undefined && <Message kind="loading">Loading {tag}…</Message>}
      {data && summaries.length === 0 && <div class="chart-empty">No histogram of {tag} has values to plot.</div>}
      <div class="chart-plot" ref={plotRef} />
      {shown && (
        <div class="histogram-legend" data-testid="histogram-legend">
          <div class="histogram-values">
            <span class="muted">{cursor === null ? "last step" : "step"}</span> <strong>{formatStep(shown.step)}</strong>
            <span>
              <span class="muted">median</span> {formatNumber(valueOf(shown, MEDIAN))}
            </span>
            <span>
              <span class="muted">25–75 %</span> {rangeText(shown, P25, P75)}
            </span>
            <span>
              <span class="muted">5–95 %</span> {rangeText(shown, P5, P95)}
            </span>
            <span>
              <span class="muted">min–max</span> {rangeText(shown, MIN, MAX)}
            </span>
            <span class="muted">{formatNumber(shown.total)} values</span>
          </div>
          {histogram && <Bars histogram={histogram} />}
        </div>
      )}
    </div>
  );
}

export interface HistogramsPanelProps {
  session: RunSession;
  query: URLSearchParams;
}

export function HistogramsPanel({ session, query }: HistogramsPanelProps) {
  const theme = useTheme();
  const filter = query.get("filter") ?? "";
  const tags = session.histogramTags;
  if (session.histogramsError && !tags) {
    return <Message kind="error">Cannot load the histograms of this run: {describeError(session.histogramsError)}</Message>;
  }
  if (!tags) return <Message kind="loading">Loading histograms…</Message>;
  if (!tags.length) {
    return (
      <Message kind="empty">
        {session.isLive
          ? "This run has logged no histograms yet. They appear here as soon as it calls log_histogram."
          : "This run logged no histograms (log_histogram)."}
      </Message>
    );
  }
  const words = filter.toLowerCase().split(/\s+/).filter(Boolean);
  const shown = tags.filter((tag) => words.every((word) => tag.toLowerCase().includes(word)));
  return (
    <div class="histograms" data-testid="histograms">
      <div class="toolbar">
        <input
          type="search"
          class="filter"
          placeholder="Filter histograms"
          aria-label="Filter histograms"
          value={filter}
          onInput={(event) => updateQuery({ filter: (event.target as HTMLInputElement).value || null })}
        />
        <span class="muted hint">
          Bands: 5–95 % and 25–75 % of the values; line: median; dashed: min and max. Hover a step to see its histogram.
        </span>
      </div>
      {shown.length === 0 && <Message kind="empty">No histogram tag matches “{filter}”.</Message>}
      <div class="chart-grid">
        {shown.map((tag) => (
          <HistogramCard
            key={tag}
            experiment={session.experiment}
            run={session.run}
            tag={tag}
            version={session.histogramVersions.get(tag) ?? 0}
            theme={theme}
          />
        ))}
      </div>
    </div>
  );
}
