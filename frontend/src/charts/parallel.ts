// Scales of the parallel coordinates view: one axis per param or metric,
// numeric (linear or log) or categorical, and the colour scale of the lines.
// Positions run from 0 at the bottom of an axis to 1 at its top.

import { axisLabel, axisValue, categoryOf, numericValue, parseAxisKey } from "../brushes";
import { colorAt } from "../colors";
import { formatTick, formatValue } from "../format";
import type { Run } from "../types";

/** A numeric axis whose positive values span more than this ratio (two decades) is drawn on a log scale. */
const AUTO_LOG_RATIO = 100;
/** Tick labels an axis aims for. */
const TICK_COUNT = 6;

export type ScaleChoice = "log" | "linear";

export interface Tick {
  position: number;
  text: string;
}

export interface Axis {
  key: string;
  label: string;
  kind: "numeric" | "categorical";
  /** Whether the axis is drawn on a log scale now. */
  log: boolean;
  /** Whether a log scale is possible: every value is positive. */
  canLog: boolean;
  /** Whether the axis chose a log scale by itself. */
  autoLog: boolean;
  /** The categories of a categorical axis, top to bottom. */
  categories: string[];
  ticks: Tick[];
  /** Runs that have no value on this axis; they are drawn in the "n/a" slot under it. */
  missing: number;
  /** Return a value's position, or null when the run has no value on this axis. */
  position(value: unknown): number | null;
  /** Return the value at a position of a numeric axis. */
  invert(position: number): number;
}

/** Return a step of 1, 2 or 5 times a power of ten near `rough`. */
function niceStep(rough: number): number {
  const power = Math.pow(10, Math.floor(Math.log10(rough)));
  const fraction = rough / power;
  if (fraction < 1.5) return power;
  if (fraction < 3.5) return 2 * power;
  if (fraction < 7.5) return 5 * power;
  return 10 * power;
}

/** Round away the float noise of `n × step` (0.30000000000000004 → 0.3). */
function clean(value: number): number {
  return Number(value.toPrecision(12));
}

function linearAxis(lo: number, hi: number): { domain: [number, number]; ticks: number[] } {
  if (lo === hi) {
    const pad = lo === 0 ? 1 : Math.abs(lo) * 0.1;
    lo -= pad;
    hi += pad;
  }
  const step = niceStep((hi - lo) / (TICK_COUNT - 1));
  const start = Math.floor(lo / step) * step;
  const end = Math.ceil(hi / step) * step;
  const ticks: number[] = [];
  for (let i = 0; start + i * step <= end + step * 1e-9; i++) ticks.push(clean(start + i * step));
  return { domain: [clean(start), clean(end)], ticks };
}

function logAxis(lo: number, hi: number): { domain: [number, number]; ticks: number[] } {
  let first = Math.floor(Math.log10(lo));
  let last = Math.ceil(Math.log10(hi));
  if (first === last) {
    first -= 1;
    last += 1;
  }
  // Few decades leave room for 2× and 5× ticks between the powers of ten.
  const multiples = last - first <= 2 ? [1, 2, 5] : [1];
  const ticks: number[] = [];
  for (let exponent = first; exponent <= last; exponent++) {
    for (const multiple of multiples) {
      const value = clean(multiple * Math.pow(10, exponent));
      if (exponent === last && multiple > 1) break;
      ticks.push(value);
    }
  }
  return { domain: [Math.pow(10, first), Math.pow(10, last)], ticks };
}

/** Order categories as people read them: numbers by value, text alphabetically. */
function compareCategories(a: string, b: string): number {
  return a.localeCompare(b, undefined, { numeric: true });
}

/**
 * Build the axis of `key` over `runs`. An axis is numeric when every value
 * the runs have is a number (numeric text included), else categorical.
 * `choice` forces a log or linear scale; without it, positive values that
 * span more than two decades get a log scale.
 */
export function buildAxis(key: string, runs: Run[], choice?: ScaleChoice): Axis {
  const parsed = parseAxisKey(key);
  const values = parsed ? runs.map((run) => axisValue(run, parsed)) : [];
  const present = values.filter((value) => value !== null && value !== undefined);
  const numbers = present.map(numericValue);
  const numeric = numbers.every((value) => value !== null);
  const missing = values.length - present.length;
  const base = { key, label: axisLabel(key), missing };

  if (!numeric) {
    const categories = [...new Set(present.map((value) => categoryOf(value)!))].sort(compareCategories);
    const spacing = 1 / categories.length;
    const slot = new Map(categories.map((category, index) => [category, 1 - (index + 0.5) * spacing]));
    return {
      ...base,
      kind: "categorical",
      log: false,
      canLog: false,
      autoLog: false,
      categories,
      ticks: categories.map((category) => ({ position: slot.get(category)!, text: category })),
      position: (value) => slot.get(categoryOf(value) ?? "") ?? null,
      invert: () => NaN,
    };
  }

  const finite = numbers as number[];
  const lo = finite.length ? Math.min(...finite) : 0;
  const hi = finite.length ? Math.max(...finite) : 1;
  const canLog = finite.length > 0 && lo > 0;
  const autoLog = canLog && hi / lo > AUTO_LOG_RATIO;
  const log = canLog && (choice ? choice === "log" : autoLog);
  const { domain, ticks } = log ? logAxis(lo, hi) : linearAxis(lo, hi);
  const [start, end] = log ? [Math.log10(domain[0]), Math.log10(domain[1])] : domain;
  const forward = (value: number) => ((log ? Math.log10(value) : value) - start) / (end - start);
  return {
    ...base,
    kind: "numeric",
    log,
    canLog,
    autoLog,
    categories: [],
    ticks: ticks.map((value) => ({ position: forward(value), text: formatTick(value).replace(/\.0+e/, "e") })),
    position: (value) => {
      const number = numericValue(value);
      if (number === null || (log && number <= 0)) return null;
      return Math.min(1, Math.max(0, forward(number)));
    },
    invert: (position) => {
      const raw = start + position * (end - start);
      return log ? Math.pow(10, raw) : raw;
    },
  };
}

/** Round `value` down (or up) to `digits` significant digits, so that a brush end keeps the run it touches. */
export function roundOutward(value: number, direction: "down" | "up", digits = 3): number {
  if (value === 0 || !Number.isFinite(value)) return value;
  const power = Math.pow(10, Math.floor(Math.log10(Math.abs(value))) - digits + 1);
  const scaled = value / power;
  const rounded = direction === "down" ? Math.floor(scaled + 1e-9) : Math.ceil(scaled - 1e-9);
  return clean(rounded * power);
}

/** Order param keys: those whose value differs between runs first, since they distinguish the runs. */
export function rankParams(runs: Run[]): { all: string[]; varying: string[] } {
  const values = new Map<string, Set<string>>();
  for (const run of runs) {
    for (const [key, value] of Object.entries(run.params ?? {})) {
      if (!values.has(key)) values.set(key, new Set());
      values.get(key)!.add(formatValue(value));
    }
  }
  const keys = [...values.keys()].sort(compareCategories);
  // A param that some runs lack also distinguishes them.
  const varying = keys.filter((key) => values.get(key)!.size > 1 || runs.some((run) => !(key in (run.params ?? {}))));
  return { all: [...varying, ...keys.filter((key) => !varying.includes(key))], varying };
}

/** Return the names of the metrics the runs have, in name order. */
export function metricNames(runs: Run[]): string[] {
  const names = new Set<string>();
  for (const run of runs) {
    for (const name of Object.keys(run.metrics ?? {})) names.add(name);
    for (const name of Object.keys(run.best ?? {})) names.add(name);
  }
  return [...names].sort(compareCategories);
}

/** Colours of a continuous scale, low to high; each reads on light and dark backgrounds. */
const GRADIENT = ["#3b82f6", "#14b8a6", "#84cc16", "#f59e0b", "#ef4444"];
/** The colour of every line when no axis colours them. */
export const PLAIN_COLOR = "#3b82f6";

function mix(a: string, b: string, t: number): string {
  const channel = (hex: string, offset: number) => parseInt(hex.slice(1 + offset, 3 + offset), 16);
  const parts = [0, 2, 4].map((offset) => Math.round(channel(a, offset) + (channel(b, offset) - channel(a, offset)) * t));
  return `rgb(${parts.join(", ")})`;
}

/** Return the colour at `t` (0 to 1) of the continuous scale. */
export function gradientColor(t: number): string {
  const clamped = Math.min(1, Math.max(0, t));
  const scaled = clamped * (GRADIENT.length - 1);
  const index = Math.min(GRADIENT.length - 2, Math.floor(scaled));
  return mix(GRADIENT[index], GRADIENT[index + 1], scaled - index);
}

/** The CSS gradient of the colour legend, low at the left. */
export const GRADIENT_CSS = `linear-gradient(to right, ${GRADIENT.join(", ")})`;

/** Return the colour of the category at `index` of an axis, as the charts colour runs. */
export function categoryColor(index: number): string {
  return colorAt(index);
}

export interface ColorScale {
  /** Return the colour of a run; null when the run has no value on the colour axis. */
  color(run: Run): string | null;
  axis: Axis;
  /** The value range of a numeric colour axis, for its legend. */
  range: [number, number] | null;
}

/** Build the colour scale of an axis: the gradient along its (linear or log) position, or a colour per category. */
export function buildColorScale(axis: Axis, runs: Run[]): ColorScale {
  const parsed = parseAxisKey(axis.key)!;
  if (axis.kind === "categorical") {
    const index = new Map(axis.categories.map((category, i) => [category, i]));
    return {
      axis,
      range: null,
      color: (run) => {
        const category = categoryOf(axisValue(run, parsed));
        return category === null ? null : categoryColor(index.get(category) ?? 0);
      },
    };
  }
  // Colour by the runs' own extent, not the axis's rounded domain, so that the ends of the gradient are used.
  const numbers = runs.map((run) => numericValue(axisValue(run, parsed))).filter((value): value is number => value !== null);
  const usable = axis.log ? numbers.filter((value) => value > 0) : numbers;
  if (!usable.length) return { axis, range: null, color: () => null };
  const lo = Math.min(...usable);
  const hi = Math.max(...usable);
  const toUnit = (value: number) => {
    if (hi === lo) return 0.5;
    if (axis.log) return (Math.log10(value) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo));
    return (value - lo) / (hi - lo);
  };
  return {
    axis,
    range: [lo, hi],
    color: (run) => {
      const value = numericValue(axisValue(run, parsed));
      if (value === null || (axis.log && value <= 0)) return null;
      return gradientColor(toUnit(value));
    },
  };
}
