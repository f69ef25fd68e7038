// Percentiles of binned distributions (edges and counts), for the histogram charts.
//
// Within a bin the values are taken as spread evenly between its edges, so a
// percentile is interpolated linearly inside the bin that contains it. An edge
// the logger stored as ±Inf arrives as null. The bin it bounds has no width
// to interpolate over, so its values are placed at the bin's finite edge.

import type { Histogram } from "../types";

/** The percentiles each histogram chart draws, as fractions: min, 5, 25, median, 75, 95, max. */
export const QUANTILES = [0, 0.05, 0.25, 0.5, 0.75, 0.95, 1] as const;

/** One histogram's summary: the value at each of `QUANTILES`, and the number of values. */
export interface Summary {
  step: number;
  values: number[];
  total: number;
}

/** Return the edges with each null (infinite) edge replaced by its neighbour, or null when none is finite. */
export function finiteEdges(edges: (number | null)[]): number[] | null {
  const result = edges.map((edge) => (typeof edge === "number" && Number.isFinite(edge) ? edge : NaN));
  for (let i = 1; i < result.length; i++) if (Number.isNaN(result[i]) && !Number.isNaN(result[i - 1])) result[i] = result[i - 1];
  for (let i = result.length - 2; i >= 0; i--) if (Number.isNaN(result[i]) && !Number.isNaN(result[i + 1])) result[i] = result[i + 1];
  return result.some(Number.isNaN) ? null : result;
}

/** Return the value at fraction `q` (0 to 1) of a binned distribution; null for an empty one. */
export function quantile(edges: number[], counts: number[], total: number, q: number): number | null {
  if (total <= 0) return null;
  const bins = Math.min(counts.length, edges.length - 1);
  if (q <= 0) {
    for (let i = 0; i < bins; i++) if (counts[i] > 0) return edges[i];
    return null;
  }
  if (q >= 1) {
    for (let i = bins - 1; i >= 0; i--) if (counts[i] > 0) return edges[i + 1];
    return null;
  }
  const target = q * total;
  let below = 0;
  for (let i = 0; i < bins; i++) {
    const count = counts[i];
    if (count <= 0) continue;
    if (below + count >= target) {
      const fraction = (target - below) / count;
      return edges[i] + fraction * (edges[i + 1] - edges[i]);
    }
    below += count;
  }
  // Rounding left the target just above the last count: the largest value.
  for (let i = bins - 1; i >= 0; i--) if (counts[i] > 0) return edges[i + 1];
  return null;
}

/** Summarize a histogram at `QUANTILES`; null when it has no step, no values or no finite edge. */
export function summarize(histogram: Histogram): Summary | null {
  if (typeof histogram.step !== "number") return null;
  const edges = finiteEdges(histogram.edges ?? []);
  const counts = (histogram.counts ?? []).map((count) => (typeof count === "number" && count > 0 ? count : 0));
  if (!edges || edges.length !== counts.length + 1) return null;
  const total = counts.reduce((sum, count) => sum + count, 0);
  if (total <= 0) return null;
  const values = QUANTILES.map((q) => quantile(edges, counts, total, q) ?? NaN);
  return { step: histogram.step, values, total };
}

/** Summarize histograms in step order; those that cannot be summarized are left out. */
export function summarizeAll(histograms: Histogram[]): Summary[] {
  const summaries: Summary[] = [];
  for (const histogram of histograms) {
    const summary = summarize(histogram);
    if (summary) summaries.push(summary);
  }
  summaries.sort((a, b) => a.step - b.step);
  // A step logged twice keeps its last histogram, since a chart's x values must differ.
  const unique: Summary[] = [];
  for (const summary of summaries) {
    if (unique.length && unique[unique.length - 1].step === summary.step) unique[unique.length - 1] = summary;
    else unique.push(summary);
  }
  return unique;
}
