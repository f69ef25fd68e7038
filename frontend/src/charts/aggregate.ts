// Aligning runs that log at different steps: one metric against another
// within a run, and the mean and spread of a group of runs.
//
// How runs are aligned
// --------------------
// Runs and metrics rarely share every step: a validation metric is logged
// every 50 steps, a resumed run repeats steps, a downsampled history keeps
// other rows in each run. Both functions here use the same rule, "the value
// at or just before". At a given x, a series contributes the value of its
// last point whose x is not greater. It contributes only between its own
// first and last point, so a short run (a live one) is not carried past its end.
// Aggregation evaluates that rule on the union of the member runs' x values
// rather than on fixed buckets, so a lone run draws exactly its own line.
// Past MAX_AGGREGATE_POINTS distinct x values, the union is thinned evenly.

import { FINITE, type Series } from "./data";

/** Points of one line in ascending x order, every value finite. */
export interface Line {
  xs: number[];
  ys: number[];
}

/** The spread drawn around a group's mean: its min and max, or one standard deviation either side. */
export type BandKind = "minmax" | "std";

export const BAND_NAMES: Record<BandKind, string> = { minmax: "min–max", std: "mean ± std" };

/** A group's mean line and band on a shared x grid; null where no member has a value. */
export interface Aggregate {
  xs: number[];
  mean: (number | null)[];
  lower: (number | null)[];
  upper: (number | null)[];
  /** How many member runs have a value at each x. */
  counts: number[];
}

/** At most this many x values per aggregate; a longer union of x values is thinned evenly. */
export const MAX_AGGREGATE_POINTS = 3000;

/** Return the index of the last of ascending `xs` that is ≤ `x`, or -1 when every x is greater. */
export function lastAtOrBefore(xs: number[], x: number): number {
  let lo = 0;
  let hi = xs.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (xs[mid] <= x) lo = mid + 1;
    else hi = mid;
  }
  return lo - 1;
}

/** Return the indices of `keys` in ascending key order, ties kept in their original order. */
function ascendingOrder(keys: number[]): number[] {
  const order = keys.map((_key, index) => index);
  for (let i = 1; i < keys.length; i++) {
    if (keys[i] < keys[i - 1]) return order.sort((a, b) => keys[a] - keys[b] || a - b);
  }
  return order;
}

/** Return the finite points of a series as (step, value) in step order. */
function finiteByStep(series: Series): { steps: number[]; values: number[] } {
  const steps: number[] = [];
  const values: number[] = [];
  for (const i of ascendingOrder(series.steps)) {
    if (series.kinds[i] !== FINITE || !Number.isFinite(series.steps[i])) continue;
    steps.push(series.steps[i]);
    values.push(series.values[i]);
  }
  return { steps, values };
}

/** Points of one metric against another, in the order of their steps. */
export interface Pairs {
  xs: number[];
  ys: number[];
  steps: number[];
  /** Points of the y metric left out: NaN, ±Inf or null, or no x value at or before their step. */
  skipped: number;
}

/**
 * Pair each point of `y` with the value of `x` at its step, or with the last
 * value of `x` logged before that step (an epoch counter logged once per
 * epoch, for example). With `x` null the step itself is the x value.
 */
export function pairByStep(x: Series | null, y: Series): Pairs {
  const pairs: Pairs = { xs: [], ys: [], steps: [], skipped: 0 };
  const finiteX = x ? finiteByStep(x) : null;
  for (const i of ascendingOrder(y.steps)) {
    const step = y.steps[i];
    if (y.kinds[i] !== FINITE || !Number.isFinite(step)) {
      pairs.skipped += 1;
      continue;
    }
    let xValue = step;
    if (finiteX) {
      const at = lastAtOrBefore(finiteX.steps, step);
      if (at < 0) {
        pairs.skipped += 1;
        continue;
      }
      xValue = finiteX.values[at];
    }
    pairs.xs.push(xValue);
    pairs.ys.push(y.values[i]);
    pairs.steps.push(step);
  }
  return pairs;
}

/** Return the sorted distinct x values of `lines`, thinned evenly to at most `limit` (the last one kept). */
function unionOfXs(lines: Line[], limit: number): number[] {
  const all: number[] = [];
  for (const line of lines) for (const x of line.xs) all.push(x);
  all.sort((a, b) => a - b);
  const union: number[] = [];
  for (const x of all) if (!union.length || union[union.length - 1] !== x) union.push(x);
  if (union.length <= limit) return union;
  const thinned: number[] = [];
  const stride = union.length / limit;
  for (let k = 0; k < limit - 1; k++) thinned.push(union[Math.floor(k * stride)]);
  thinned.push(union[union.length - 1]);
  return thinned;
}

/**
 * Return the mean of `lines` at each x of their union, with the band `kind`:
 * the min and max of the members, or the mean ± their standard deviation
 * (population, so a lone member has a zero-width band).
 */
export function aggregateLines(lines: Line[], kind: BandKind, limit = MAX_AGGREGATE_POINTS): Aggregate {
  const xs = unionOfXs(lines, limit);
  const result: Aggregate = { xs, mean: [], lower: [], upper: [], counts: [] };
  const values: number[] = [];
  for (const x of xs) {
    values.length = 0;
    for (const line of lines) {
      const n = line.xs.length;
      if (n && x >= line.xs[0] && x <= line.xs[n - 1]) values.push(line.ys[lastAtOrBefore(line.xs, x)]);
    }
    result.counts.push(values.length);
    if (!values.length) {
      result.mean.push(null);
      result.lower.push(null);
      result.upper.push(null);
      continue;
    }
    let sum = 0;
    for (const value of values) sum += value;
    const mean = sum / values.length;
    result.mean.push(mean);
    if (kind === "minmax") {
      result.lower.push(Math.min(...values));
      result.upper.push(Math.max(...values));
    } else {
      // A second pass sums the deviations from the known mean, which avoids the cancellation
      // that the one-pass formula (mean of squares minus squared mean) suffers for large values.
      let squares = 0;
      for (const value of values) squares += (value - mean) ** 2;
      const std = Math.sqrt(squares / values.length);
      result.lower.push(mean - std);
      result.upper.push(mean + std);
    }
  }
  return result;
}
