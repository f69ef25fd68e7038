// Parallel coordinates of the runs' params and metrics: one vertical axis per
// param and chosen metric, one line per run, coloured by a chosen axis.
// Dragging along an axis draws a brush that keeps a range of it. The brushes
// are kept in the URL, so the runs table reads and applies them too.

import { useEffect, useMemo, useRef, useState } from "preact/hooks";

import {
  axisKey,
  axisLabel,
  axisValue,
  brushesKeep,
  describeBrush,
  formatBrush,
  formatShort,
  parseAxisKey,
  IgnoredBrushes,
  readBrushes,
  writeBrushes,
  type Brush,
} from "../brushes";
import {
  GRADIENT_CSS,
  PLAIN_COLOR,
  buildAxis,
  buildColorScale,
  categoryColor,
  metricNames,
  rankParams,
  roundOutward,
  type Axis,
  type ColorScale,
  type ScaleChoice,
} from "../charts/parallel";
import { Chips, Link, Message, RunLabel, StatusBadge } from "../components/common";
import { formatValue } from "../format";
import { experimentUrl, navigate, runPageUrl, updateQuery } from "../router";
import type { Run } from "../types";
import { useMetricDirections, type MetricDirections } from "./directions";

/** Param and metric axes drawn when the URL does not choose them. */
const DEFAULT_PARAM_AXES = 6;
const DEFAULT_METRIC_AXES = 3;

const PLOT_HEIGHT = 440;
/** Room above the axes for their headers, and below them for the "n/a" slot. */
const TOP = 58;
const BOTTOM = 46;
/** Room left of the first axis and right of the last one, for tick labels. */
const SIDE = 72;
/** Width (px) of the strip along an axis that starts a brush. */
const BRUSH_WIDTH = 26;
/** A drag shorter than this (px) is a click, which clears the axis's brush. */
const CLICK_PIXELS = 3;

type ValueMode = "last" | "best";

/**
 * Return the axis key of a metric: its last value, or its best (min or max by
 * its direction). A metric without a direction has no best, so it keeps its last value.
 */
function metricAxisKey(name: string, mode: ValueMode, directions: MetricDirections): string {
  const direction = directions.of(name);
  return mode === "best" && direction !== "none" ? axisKey(direction, name) : axisKey("metric", name);
}

/** Read a chosen-axes list from the URL; an empty value means "none", absence means the default. */
function chosenNames(query: URLSearchParams, key: string, fallback: string[]): string[] {
  if (!query.has(key)) return fallback;
  return query.getAll(key).filter(Boolean);
}

/** Read the per-axis scale choices (`scale=KEY:log` or `KEY:linear`). */
function readScales(query: URLSearchParams): Map<string, ScaleChoice> {
  const scales = new Map<string, ScaleChoice>();
  for (const text of query.getAll("scale")) {
    const colon = text.lastIndexOf(":");
    const choice = text.slice(colon + 1);
    if (colon > 0 && (choice === "log" || choice === "linear")) scales.set(text.slice(0, colon), choice);
  }
  return scales;
}

function writeScales(scales: Map<string, ScaleChoice>): void {
  updateQuery({ scale: scales.size ? [...scales].map(([key, choice]) => `${key}:${choice}`) : null });
}

/** Return an element's width, updated when it resizes. */
function useWidth(): [preact.RefObject<HTMLDivElement | null>, number] {
  const ref = useRef<HTMLDivElement>(null);
  const [width, setWidth] = useState(0);
  useEffect(() => {
    const element = ref.current;
    if (!element) return;
    const observer = new ResizeObserver(() => setWidth(element.clientWidth));
    observer.observe(element);
    setWidth(element.clientWidth);
    return () => observer.disconnect();
  }, []);
  return [ref, width];
}

interface Geometry {
  width: number;
  plotHeight: number;
  /** The x of each axis. */
  xs: number[];
  /** Return the y of a position (0 bottom, 1 top). */
  y(position: number): number;
  /** Return the position at a y. */
  position(y: number): number;
  missingY: number;
}

function layout(width: number, count: number): Geometry {
  const plotHeight = PLOT_HEIGHT - TOP - BOTTOM;
  const span = Math.max(0, width - 2 * SIDE);
  const xs = Array.from({ length: count }, (_, i) => (count === 1 ? width / 2 : SIDE + (i * span) / (count - 1)));
  return {
    width,
    plotHeight,
    xs,
    y: (position) => TOP + (1 - position) * plotHeight,
    position: (y) => Math.min(1, Math.max(0, 1 - (y - TOP) / plotHeight)),
    missingY: TOP + plotHeight + 26,
  };
}

/** Turn a dragged span of an axis (two positions) into a brush of its values. */
function brushFromPositions(axis: Axis, a: number, b: number): Brush {
  const low = Math.min(a, b);
  const high = Math.max(a, b);
  if (axis.kind === "categorical") {
    let values = axis.ticks.filter((tick) => tick.position >= low && tick.position <= high).map((tick) => tick.text);
    if (!values.length && axis.ticks.length) {
      // A span between two categories keeps the nearer one.
      const middle = (low + high) / 2;
      const nearest = axis.ticks.reduce((best, tick) => (Math.abs(tick.position - middle) < Math.abs(best.position - middle) ? tick : best));
      values = [nearest.text];
    }
    return { axis: axis.key, kind: "categories", values };
  }
  return { axis: axis.key, kind: "range", lo: roundOutward(axis.invert(low), "down"), hi: roundOutward(axis.invert(high), "up") };
}

/** Return the span of positions a brush covers on an axis; null when it covers none of its values. */
function brushPositions(axis: Axis, brush: Brush): [number, number] | null {
  if (brush.kind === "categories") {
    if (axis.kind !== "categorical") return null;
    const positions = axis.ticks.filter((tick) => brush.values.includes(tick.text)).map((tick) => tick.position);
    if (!positions.length) return null;
    const half = 0.5 / axis.categories.length;
    return [Math.max(0, Math.min(...positions) - half), Math.min(1, Math.max(...positions) + half)];
  }
  if (axis.kind !== "numeric") return null;
  const low = axis.position(brush.lo) ?? 0;
  const high = axis.position(brush.hi) ?? 0;
  return [low, high];
}

/** A brush being dragged: its axis and the span in y pixels; `move` when an existing brush is dragged. */
interface Drag {
  axis: string;
  from: number;
  to: number;
  move?: { start: number; span: [number, number] };
}

function linePath(run: Run, axes: Axis[], geometry: Geometry): string {
  return axes
    .map((axis, i) => {
      const key = parseAxisKey(axis.key)!;
      const position = axis.position(axisValue(run, key));
      const y = position === null ? geometry.missingY : geometry.y(position);
      return `${i ? "L" : "M"}${geometry.xs[i].toFixed(1)},${y.toFixed(1)}`;
    })
    .join("");
}

/** Return the colour of a run's line: by the colour axis, the plain colour without one, null when the run has no value on it. */
function lineColor(run: Run, colors: ColorScale | null): string | null {
  if (!colors) return PLAIN_COLOR;
  return colors.color(run);
}

interface PlotProps {
  experiment: string;
  runs: Run[];
  axes: Axis[];
  brushes: Brush[];
  colors: ColorScale | null;
  onBrush(axis: string, brush: Brush | null): void;
  onToggleScale(axis: Axis): void;
}

function ParallelPlot(props: PlotProps) {
  const { experiment, runs, axes, brushes, colors, onBrush, onToggleScale } = props;
  const [holder, width] = useWidth();
  const svg = useRef<SVGSVGElement>(null);
  const [drag, setDrag] = useState<Drag | null>(null);
  const [hovered, setHovered] = useState<string | null>(null);
  const geometry = useMemo(() => layout(width, axes.length), [width, axes.length]);
  const paths = useMemo(() => new Map(runs.map((run) => [run.id, linePath(run, axes, geometry)])), [runs, axes, geometry]);

  // While dragging, the dragged brush replaces the axis's own, so the lines follow the pointer.
  const dragAxis = drag ? axes.find((axis) => axis.key === drag.axis) : undefined;
  let active = brushes;
  if (drag && dragAxis && Math.abs(drag.to - drag.from) >= CLICK_PIXELS) {
    const dragged = brushFromPositions(dragAxis, geometry.position(drag.from), geometry.position(drag.to));
    active = [...brushes.filter((brush) => brush.axis !== drag.axis), dragged];
  }
  const kept = new Set(runs.filter((run) => brushesKeep(active, run)).map((run) => run.id));
  const hoveredRun = runs.find((run) => run.id === hovered);

  // The lines keep their order whatever the brushes keep, because moving
  // thousands of SVG nodes on each pointer move makes dragging slow. The
  // hovered line is drawn again, over them. The lines are rebuilt only when
  // the kept runs or the colours change, not when the hovered line does.
  const keptKey = runs.map((run) => (kept.has(run.id) ? "1" : "0")).join("");
  const lines = useMemo(
    () => (
      <g class="pc-lines">
        {runs.map((run) => {
          const keep = kept.has(run.id);
          const color = lineColor(run, colors);
          const classes = ["pc-line", keep ? "kept" : "dimmed"];
          if (color === null) classes.push("uncoloured");
          return <path key={run.id} class={classes.join(" ")} data-run={run.id} d={paths.get(run.id)} stroke={keep && color ? color : undefined} />;
        })}
      </g>
    ),
    [runs, paths, keptKey, colors],
  );

  const pointerY = (event: PointerEvent) => {
    const top = svg.current?.getBoundingClientRect().top ?? 0;
    return Math.min(TOP + geometry.plotHeight, Math.max(TOP, event.clientY - top));
  };

  const startDrag = (event: PointerEvent, axis: Axis) => {
    if (event.button !== 0) return;
    event.preventDefault();
    (event.currentTarget as Element).setPointerCapture(event.pointerId);
    const y = pointerY(event);
    const brush = brushes.find((item) => item.axis === axis.key);
    const span = brush ? brushPositions(axis, brush) : null;
    if (span) {
      const top = geometry.y(span[1]);
      const bottom = geometry.y(span[0]);
      if (y >= top && y <= bottom) {
        setDrag({ axis: axis.key, from: top, to: bottom, move: { start: y, span: [top, bottom] } });
        return;
      }
    }
    setDrag({ axis: axis.key, from: y, to: y });
  };

  const moveDrag = (event: PointerEvent) => {
    if (!drag) return;
    const y = pointerY(event);
    if (!drag.move) {
      setDrag({ ...drag, to: y });
      return;
    }
    const [top, bottom] = drag.move.span;
    const shift = Math.min(TOP + geometry.plotHeight - bottom, Math.max(TOP - top, y - drag.move.start));
    setDrag({ ...drag, from: top + shift, to: bottom + shift });
  };

  const endDrag = () => {
    if (!drag || !dragAxis) return setDrag(null);
    const moved = drag.move ? Math.abs(drag.from - drag.move.span[0]) : Math.abs(drag.to - drag.from);
    if (moved < CLICK_PIXELS) onBrush(drag.axis, null);
    else onBrush(drag.axis, brushFromPositions(dragAxis, geometry.position(drag.from), geometry.position(drag.to)));
    setDrag(null);
  };

  const lineTarget = (event: Event) => (event.target as Element).getAttribute?.("data-run") ?? null;
  const spacing = axes.length > 1 ? geometry.xs[1] - geometry.xs[0] : width;
  const headerWidth = Math.max(60, Math.min(180, spacing - 8));

  return (
    <div class="pc-plot" ref={holder} data-testid="parallel-plot" data-kept={kept.size} data-drawn={runs.length}>
      {width > 0 &&
        axes.map((axis, i) => (
          <div
            class="pc-axis-header"
            key={axis.key}
            data-axis={axis.key}
            style={{ left: `${geometry.xs[i] - headerWidth / 2}px`, width: `${headerWidth}px` }}
          >
            <span class="pc-axis-label" title={axis.label}>
              {axis.label}
            </span>
            {axis.kind === "numeric" && axis.canLog ? (
              <button
                type="button"
                class={axis.log ? "pc-scale on" : "pc-scale"}
                aria-pressed={axis.log}
                aria-label={`Log scale for ${axis.label}`}
                title={axis.log ? "Log scale; click for a linear scale" : "Linear scale; click for a log scale"}
                onClick={() => onToggleScale(axis)}
              >
                log
              </button>
            ) : (
              <span class="pc-axis-kind muted">{axis.kind === "categorical" ? "categories" : "linear"}</span>
            )}
          </div>
        ))}
      <svg
        ref={svg}
        width={width}
        height={PLOT_HEIGHT}
        role="img"
        aria-label={`Parallel coordinates of ${runs.length} runs over ${axes.length} axes`}
        onPointerMove={(event) => {
          if (drag) moveDrag(event);
          else setHovered(lineTarget(event));
        }}
        onPointerLeave={() => !drag && setHovered(null)}
        onClick={(event) => {
          const run = lineTarget(event);
          if (run) navigate(runPageUrl(experiment, run));
        }}
      >
        {lines}
        {axes.map((axis, i) => {
          const x = geometry.xs[i];
          const brush = brushes.find((item) => item.axis === axis.key);
          let span: [number, number] | null = brush ? brushPositions(axis, brush) : null;
          let spanY: [number, number] | null = span ? [geometry.y(span[1]), geometry.y(span[0])] : null;
          if (drag && drag.axis === axis.key) {
            span = null;
            spanY = [Math.min(drag.from, drag.to), Math.max(drag.from, drag.to)];
          }
          return (
            <g class="pc-axis" key={axis.key} data-axis={axis.key}>
              <line class="pc-axis-line" x1={x} x2={x} y1={TOP} y2={TOP + geometry.plotHeight} />
              {axis.ticks.map((tick) => {
                const label = tick.text.length > 14 ? `${tick.text.slice(0, 13)}…` : tick.text;
                const y = geometry.y(tick.position);
                return (
                  <g key={tick.text}>
                    <line class="pc-tick" x1={x - 4} x2={x} y1={y} y2={y} />
                    {axis.kind === "categorical" && (
                      <rect class="pc-label-background" x={x - 9 - labelWidth(label)} y={y - 8} width={labelWidth(label) + 4} height={16} rx={3} />
                    )}
                    <text class="pc-tick-label" x={x - 7} y={y} dy="0.32em" text-anchor="end">
                      {label}
                    </text>
                  </g>
                );
              })}
              {axis.missing > 0 && (
                <text class="pc-tick-label pc-missing" x={x - 7} y={geometry.missingY} dy="0.32em" text-anchor="end">
                  n/a
                </text>
              )}
              {spanY && spanY[1] - spanY[0] >= 1 && (
                <rect class="pc-brush" data-axis={axis.key} x={x - BRUSH_WIDTH / 2 + 4} width={BRUSH_WIDTH - 8} y={spanY[0]} height={spanY[1] - spanY[0]} />
              )}
              <rect
                class="pc-brush-area"
                data-axis={axis.key}
                x={x - BRUSH_WIDTH / 2}
                width={BRUSH_WIDTH}
                y={TOP}
                height={geometry.plotHeight}
                onPointerDown={(event) => startDrag(event, axis)}
                onPointerMove={moveDrag}
                onPointerUp={endDrag}
                onPointerCancel={() => setDrag(null)}
              >
                <title>Drag to keep a range of {axis.label}; click to clear it</title>
              </rect>
            </g>
          );
        })}
      </svg>
      {/* The hovered line is drawn in a layer of its own, so that hovering does not repaint every line. */}
      <svg class="pc-overlay" width={width} height={PLOT_HEIGHT} aria-hidden="true">
        {hoveredRun && (
          <path
            class={kept.has(hoveredRun.id) ? "pc-hover-line kept" : "pc-hover-line"}
            data-run={hoveredRun.id}
            d={paths.get(hoveredRun.id)}
            stroke={lineColor(hoveredRun, colors) ?? undefined}
          />
        )}
      </svg>
      <HoverLine run={hoveredRun} axes={axes} />
    </div>
  );
}

let measureContext: CanvasRenderingContext2D | null | undefined;

/**
 * Return the width (px) of a tick label in the page's font at 11 px (the size
 * of `.pc-tick-label`), for the background drawn behind category labels.
 */
function labelWidth(text: string): number {
  if (measureContext === undefined) {
    measureContext = document.createElement("canvas").getContext("2d");
    if (measureContext) measureContext.font = `11px ${getComputedStyle(document.body).fontFamily}`;
  }
  // Without a canvas, 7 px per character is wider than most text in common sans-serif fonts.
  return Math.ceil(measureContext ? measureContext.measureText(text).width : text.length * 7);
}

/** Describe the run under the pointer, or how to use the plot. */
function HoverLine({ run, axes }: { run: Run | undefined; axes: Axis[] }) {
  if (!run) {
    return (
      <p class="pc-hover muted" data-testid="parallel-hover">
        Drag along an axis to keep a range of it; drag a range to move it, click an axis to clear it. Hover a line to see its run,
        click it to open the run.
      </p>
    );
  }
  return (
    <p class="pc-hover" data-testid="parallel-hover">
      <StatusBadge status={run.status} stale={run.stale} /> <strong>
        <RunLabel text={run.name ?? run.id} />
      </strong>
      {axes.map((axis) => (
        <span class="pc-hover-value" key={axis.key}>
          <span class="muted">{axis.label}</span> {formatValue(axisValue(run, parseAxisKey(axis.key)!))}
        </span>
      ))}
    </p>
  );
}

function ColorLegend({ colors }: { colors: ColorScale }) {
  const { axis, range } = colors;
  if (axis.kind === "categorical") {
    return (
      <span class="pc-legend" data-testid="parallel-legend">
        {axis.categories.map((category, index) => (
          <span class="pc-legend-item" key={category}>
            <span class="swatch" style={{ background: categoryColor(index) }} />
            {category}
          </span>
        ))}
      </span>
    );
  }
  if (!range) return <span class="pc-legend muted">no values of {axis.label}</span>;
  return (
    <span class="pc-legend" data-testid="parallel-legend">
      {formatShort(range[0])}
      <span class="pc-gradient" style={{ background: GRADIENT_CSS }} />
      {formatShort(range[1])}
      {axis.log && <span class="muted">(log)</span>}
    </span>
  );
}

export interface ParallelViewProps {
  experiment: string;
  /** The runs of the experiment, already filtered by the server when a search is active. */
  runs: Run[];
  selected: string[];
  query: URLSearchParams;
  /** The server's error message for an invalid search. The lines then show the runs of the last valid search. */
  searchError?: string | null;
}

export function ParallelView(props: ParallelViewProps) {
  const { experiment, runs, selected, query, searchError } = props;
  const directions = useMetricDirections();
  const mode: ValueMode = query.get("value") === "best" ? "best" : "last";
  const drawn = useMemo(() => (selected.length ? runs.filter((run) => selected.includes(run.id)) : runs), [runs, selected.join("\u0001")]);

  const ranked = useMemo(() => rankParams(drawn), [drawn]);
  const allMetrics = useMemo(() => metricNames(drawn), [drawn]);
  const defaultParams = (ranked.varying.length ? ranked.varying : ranked.all).slice(0, DEFAULT_PARAM_AXES);
  const params = chosenNames(query, "axis_param", defaultParams);
  const metrics = chosenNames(query, "axis_metric", allMetrics.slice(0, DEFAULT_METRIC_AXES));
  const scales = readScales(query);
  const scaleKey = query.getAll("scale").join("\u0001");

  const keys = [...params.map((name) => axisKey("param", name)), ...metrics.map((name) => metricAxisKey(name, mode, directions))];
  const axes = useMemo(() => keys.map((key) => buildAxis(key, drawn, scales.get(key))), [keys.join("\u0001"), drawn, scaleKey]);

  const colorChoice = query.get("color") ?? (metrics.length ? axisKey("metric", metrics[metrics.length - 1]) : "none");
  const colorParsed = parseAxisKey(colorChoice);
  const colorAxisKey = colorParsed?.source === "metric" ? metricAxisKey(colorParsed.name, mode, directions) : colorChoice;
  const colors = useMemo(() => {
    if (!colorParsed) return null;
    const axis = axes.find((item) => item.key === colorAxisKey) ?? buildAxis(colorAxisKey, drawn, scales.get(colorAxisKey));
    return buildColorScale(axis, drawn);
  }, [colorAxisKey, axes, drawn]);

  const brushSet = readBrushes(query, runs);
  const brushes = brushSet.active;
  const kept = drawn.filter((run) => brushesKeep(brushes, run));

  const setBrush = (axis: string, brush: Brush | null) => {
    const others = brushes.filter((item) => item.axis !== axis);
    writeBrushes(brush ? [...others, brush] : others);
  };
  const toggleScale = (axis: Axis) => {
    const next = new Map(scales);
    const choice: ScaleChoice = axis.log ? "linear" : "log";
    if (choice === (axis.autoLog ? "log" : "linear")) next.delete(axis.key);
    else next.set(axis.key, choice);
    writeScales(next);
  };
  const setMode = (next: ValueMode) => {
    // A brush on a metric's last value means nothing for its best value, and the other way round.
    const metricSources = ["metric", "min", "max"];
    const remaining = brushes.filter((brush) => !metricSources.includes(parseAxisKey(brush.axis)?.source ?? ""));
    updateQuery({ value: next === "last" ? null : next, brush: remaining.length ? remaining.map(formatBrush) : null });
  };

  const tableQuery = new URLSearchParams();
  for (const id of selected) tableQuery.append("run", id);
  if (query.get("q")) tableQuery.set("q", query.get("q")!);
  for (const brush of brushes) tableQuery.append("brush", formatBrush(brush));

  return (
    <div class="parallel" data-testid="parallel">
      <div class="toolbar">
        <input
          type="search"
          class="filter"
          placeholder="Search runs: name, or lr>=0.01 and tag:sweep"
          aria-label="Filter runs"
          value={query.get("q") ?? ""}
          onInput={(event) => updateQuery({ q: (event.target as HTMLInputElement).value || null })}
        />
        <div class="segmented" role="group" aria-label="Metric value">
          {(["last", "best"] as ValueMode[]).map((value) => (
            <button type="button" key={value} class={mode === value ? "on" : ""} aria-pressed={mode === value} data-value={value} onClick={() => setMode(value)}>
              {value === "last" ? "Last value" : "Best value"}
            </button>
          ))}
        </div>
        <label class="select-label">
          Colour by
          <select aria-label="Colour lines by" value={colorParsed ? colorChoice : "none"} onChange={(event) => updateQuery({ color: (event.target as HTMLSelectElement).value })}>
            <option value="none">nothing</option>
            <optgroup label="Metrics">
              {allMetrics.map((name) => (
                <option key={name} value={axisKey("metric", name)}>
                  {axisLabel(metricAxisKey(name, mode, directions))}
                </option>
              ))}
            </optgroup>
            <optgroup label="Params">
              {ranked.all.map((name) => (
                <option key={name} value={axisKey("param", name)}>
                  {name}
                </option>
              ))}
            </optgroup>
          </select>
        </label>
        {colors && <ColorLegend colors={colors} />}
        <span class="muted count" data-testid="parallel-count">
          {brushes.length ? `${kept.length} of ${drawn.length} runs kept` : `${drawn.length} runs`}
        </span>
      </div>
      {searchError && (
        <p class="inline-error search-error" role="alert">
          Invalid search: {searchError}
        </p>
      )}
      <Chips label="Params" options={ranked.all} selected={params} onChange={(next) => updateQuery({ axis_param: next.length ? next : [""] })} />
      <Chips label="Metrics" options={allMetrics} selected={metrics} onChange={(next) => updateQuery({ axis_metric: next.length ? next : [""] })} />
      <p class="muted hint">
        {selected.length
          ? `Drawing the ${drawn.length} selected runs.`
          : `Drawing all ${drawn.length} runs${query.get("q") ? " that match the search" : ""}; select runs in the runs table to draw only those.`}
        {mode === "best" && " Best values are the min or max of each metric, as its “best” button in the runs table sets."}
      </p>

      {runs.length === 0 ? (
        <Message kind="empty">{query.get("q") ? "No run matches the search." : "This experiment has no runs yet, so there is nothing to draw."}</Message>
      ) : drawn.length === 0 ? (
        <Message kind="empty">None of the selected runs matches the search.</Message>
      ) : axes.length === 0 ? (
        <Message kind="empty">Pick params or metrics above to draw their axes.</Message>
      ) : (
        <ParallelPlot experiment={experiment} runs={drawn} axes={axes} brushes={brushes} colors={colors} onBrush={setBrush} onToggleScale={toggleScale} />
      )}
      <IgnoredBrushes brushes={brushSet} />
      {brushes.length > 0 && (
        <div class="brush-notice" data-testid="parallel-brushes">
          <span>
            Brushes:{" "}
            {brushes.map((brush) => (
              <span class="brush-chip" key={brush.axis}>
                {describeBrush(brush)}
                <button type="button" class="brush-remove" aria-label={`Remove the brush on ${axisLabel(brush.axis)}`} onClick={() => setBrush(brush.axis, null)}>
                  ×
                </button>
              </span>
            ))}
          </span>
          <Link href={experimentUrl(experiment, "runs", tableQuery)}>Show the kept runs in the runs table</Link>
          <button type="button" class="link-button" onClick={() => updateQuery({ run: kept.map((run) => run.id) })} disabled={!kept.length}>
            Select the {kept.length} kept runs
          </button>
          <button type="button" class="link-button" onClick={() => writeBrushes([])}>
            Clear brushes
          </button>
        </div>
      )}
    </div>
  );
}
