// Axes of the parallel coordinates view and the brushes drawn on them. The
// brushes live in the URL (`?brush=…`), and the runs table keeps only the
// runs that every brush keeps, so this module has no view code of its own
// besides the notice the runs table shows.
//
// An axis key names a run value:
//   param:NAME    the param NAME (config, flattened with ".")
//   metric:NAME   the last value of metric NAME
//   min:NAME      the smallest value of metric NAME (its best when lower is better)
//   max:NAME      the largest value of metric NAME
// A brush is `KEY:LO:HI` (a numeric range, ends included) or `KEY:in:V1,V2`
// (categories, each value percent-encoded so that it contains no "," or ":").

import { formatNumber, formatValue } from "./format";
import { updateQuery } from "./router";
import type { Run } from "./types";

export type AxisSource = "param" | "metric" | "min" | "max";

export interface AxisKey {
  source: AxisSource;
  name: string;
}

export type Brush =
  | { axis: string; kind: "range"; lo: number; hi: number }
  | { axis: string; kind: "categories"; values: string[] };

const SOURCES: AxisSource[] = ["param", "metric", "min", "max"];

export function axisKey(source: AxisSource, name: string): string {
  return `${source}:${name}`;
}

/** Split an axis key into its source and name; null when the source is unknown. */
export function parseAxisKey(key: string): AxisKey | null {
  const colon = key.indexOf(":");
  if (colon < 0) return null;
  const source = key.slice(0, colon) as AxisSource;
  if (!SOURCES.includes(source) || colon === key.length - 1) return null;
  return { source, name: key.slice(colon + 1) };
}

/** Return a label for an axis: the name, with "min"/"max" for best values. */
export function axisLabel(key: string): string {
  const parsed = parseAxisKey(key);
  if (!parsed) return key;
  if (parsed.source === "min" || parsed.source === "max") return `${parsed.name} (${parsed.source})`;
  return parsed.name;
}

/** Return a run's value on an axis: undefined when the run does not have it, null for a NaN tail. */
export function axisValue(run: Run, key: AxisKey): unknown {
  switch (key.source) {
    case "param":
      return run.params?.[key.name];
    case "metric":
      return run.metrics?.[key.name];
    case "min":
      return run.best?.[key.name]?.min;
    case "max":
      return run.best?.[key.name]?.max;
  }
}

/**
 * Return a value as a finite number, or null. Numeric text counts as a
 * number, because YAML reads `lr: 1e-3` as text.
 */
export function numericValue(value: unknown): number | null {
  if (typeof value === "number") return Number.isFinite(value) ? value : null;
  if (typeof value === "string" && value.trim() !== "") {
    const number = Number(value);
    return Number.isFinite(number) ? number : null;
  }
  return null;
}

/** Return the category text of a value on a categorical axis; null when the run has no value. */
export function categoryOf(value: unknown): string | null {
  if (value === null || value === undefined) return null;
  return typeof value === "string" ? value : formatValue(value);
}

/** Parse one `brush` query value; null when it is malformed. */
export function parseBrush(text: string): Brush | null {
  const last = text.lastIndexOf(":");
  if (last < 0) return null;
  const middle = text.lastIndexOf(":", last - 1);
  if (middle < 0) return null;
  const axis = text.slice(0, middle);
  const first = text.slice(middle + 1, last);
  const second = text.slice(last + 1);
  if (!parseAxisKey(axis)) return null;
  if (first === "in") {
    try {
      const values = second === "" ? [] : second.split(",").map(decodeURIComponent);
      return { axis, kind: "categories", values };
    } catch {
      return null;
    }
  }
  const lo = Number(first);
  const hi = Number(second);
  if (first === "" || second === "" || Number.isNaN(lo) || Number.isNaN(hi)) return null;
  return { axis, kind: "range", lo: Math.min(lo, hi), hi: Math.max(lo, hi) };
}

export function formatBrush(brush: Brush): string {
  if (brush.kind === "categories") return `${brush.axis}:in:${brush.values.map(encodeURIComponent).join(",")}`;
  return `${brush.axis}:${brush.lo}:${brush.hi}`;
}

/** A `brush` query value that filters nothing, and why. */
export interface IgnoredBrush {
  text: string;
  reason: string;
}

/** The brushes of a URL: those that filter the runs, and those ignored. */
export interface BrushSet {
  active: Brush[];
  ignored: IgnoredBrush[];
}

/** Return whether some run has a value (a NaN tail included) on an axis. */
function axisExists(key: AxisKey, runs: Run[]): boolean {
  return runs.some((run) => axisValue(run, key) !== undefined);
}

/**
 * Return the brushes of a URL, one per axis (the last one wins). A brush
 * would hide every run when no run has its axis (a typo, a param of other
 * runs) or when it keeps no category, so those do not filter. The first kind
 * is listed as ignored, and an empty category brush is dropped. With no runs
 * (a search that matches none) every brush applies, as nothing can be checked.
 */
export function readBrushes(query: URLSearchParams, runs: Run[]): BrushSet {
  const byAxis = new Map<string, { brush: Brush; text: string }>();
  const ignored: IgnoredBrush[] = [];
  for (const text of query.getAll("brush")) {
    const brush = parseBrush(text);
    if (!brush) ignored.push({ text, reason: "invalid: expected KEY:LO:HI or KEY:in:V1,V2" });
    else if (brush.kind === "categories" && brush.values.length === 0) byAxis.delete(brush.axis);
    else byAxis.set(brush.axis, { brush, text });
  }
  const active: Brush[] = [];
  for (const { brush, text } of byAxis.values()) {
    const key = parseAxisKey(brush.axis)!;
    if (runs.length === 0 || axisExists(key, runs)) active.push(brush);
    else ignored.push({ text, reason: `no run has ${key.source === "param" ? "param" : "metric"} ${key.name}` });
  }
  return { active, ignored };
}

export function writeBrushes(brushes: Brush[]): void {
  updateQuery({ brush: brushes.length ? brushes.map(formatBrush) : null });
}

/** Return whether a run's value is inside a brush; a run without the value is outside every brush. */
export function brushKeeps(brush: Brush, run: Run): boolean {
  const key = parseAxisKey(brush.axis);
  if (!key) return true;
  const value = axisValue(run, key);
  if (brush.kind === "categories") {
    const category = categoryOf(value);
    return category !== null && brush.values.includes(category);
  }
  const number = numericValue(value);
  return number !== null && number >= brush.lo && number <= brush.hi;
}

/** Return whether every brush keeps a run. */
export function brushesKeep(brushes: Brush[], run: Run): boolean {
  return brushes.every((brush) => brushKeeps(brush, run));
}

/** Format a number in at most 3 significant digits, without trailing zeros: 0.0147, 8.03e-5, 1e-5. */
export function formatShort(value: number): string {
  if (!Number.isFinite(value)) return formatNumber(value);
  const magnitude = Math.abs(value);
  if (magnitude !== 0 && (magnitude >= 1e6 || magnitude < 1e-3)) return value.toExponential(2).replace(/\.?0+e/, "e");
  return String(Number(value.toPrecision(3)));
}

/** Describe a brush in a few words: "lr 1e-4 – 3e-3", "optimizer.name: adamw, sgd". */
export function describeBrush(brush: Brush): string {
  const label = axisLabel(brush.axis);
  if (brush.kind === "categories") return `${label}: ${brush.values.length ? brush.values.join(", ") : "none"}`;
  return `${label} ${formatShort(brush.lo)} – ${formatShort(brush.hi)}`;
}

/** Render the notice that lists the ignored brushes, with a button that removes them from the URL. */
export function IgnoredBrushes({ brushes }: { brushes: BrushSet }) {
  const count = brushes.ignored.length;
  if (!count) return null;
  return (
    <div class="brush-notice ignored" role="status" data-testid="ignored-brushes">
      <span>
        {count === 1 ? "This brush is ignored" : "These brushes are ignored"}:{" "}
        {brushes.ignored.map((item, index) => (
          <span class="brush-chip" key={index} data-brush={item.text}>
            “{item.text}” ({item.reason})
          </span>
        ))}
      </span>
      <button type="button" class="link-button" onClick={() => writeBrushes(brushes.active)}>
        Remove {count === 1 ? "it" : "them"} from the URL
      </button>
    </div>
  );
}

/** Render the notice of the runs table while brushes of the parallel coordinates filter it. */
export function BrushNotice({ brushes, hidden }: { brushes: Brush[]; hidden: number }) {
  if (!brushes.length) return null;
  return (
    <div class="brush-notice" role="status" data-testid="brush-notice">
      <span>
        Parallel coordinates brushes hide {hidden} {hidden === 1 ? "run" : "runs"}:{" "}
        {brushes.map((brush) => (
          <span class="brush-chip" key={brush.axis}>
            {describeBrush(brush)}
          </span>
        ))}
      </span>
      <button type="button" class="link-button" onClick={() => writeBrushes([])}>
        Clear brushes
      </button>
    </div>
  );
}
