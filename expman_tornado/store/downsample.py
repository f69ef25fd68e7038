"""Shape-preserving downsampling of metric series (min/max buckets)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .tables import STEP, TIMESTAMP


def downsample(table: pa.Table, max_points: int) -> pa.Table:
    """Keep at most ``max_points`` points of each metric column, keeping its shape.

    Each column's non-null points are cut into equal buckets; from each bucket the
    first, last, smallest and largest finite values survive, and the first NaN or
    ±Inf so that those stay visible. The result holds the union of the rows kept
    by any column, in their original order; a cell whose row was kept for another
    column only is null, so no column has more than ``max_points`` points.
    """
    metrics = [c for c in table.column_names if c not in (STEP, TIMESTAMP)]
    if max_points <= 0 or table.num_rows <= max_points:
        return table
    if not metrics:
        return table.take(spread(np.arange(table.num_rows), max_points))

    kept_per_column = {name: _keep(table.column(name), max_points) for name in metrics}
    rows = np.unique(np.concatenate(list(kept_per_column.values())))
    result = table.take(pa.array(rows))
    for name, kept in kept_per_column.items():
        mask = np.isin(rows, kept, assume_unique=True)
        index = result.column_names.index(name)
        column = pc.if_else(pa.array(mask), result.column(name), pa.scalar(None, result.schema.field(name).type))
        result = result.set_column(index, name, column)
    return result


def _keep(column: pa.ChunkedArray, max_points: int) -> np.ndarray:
    """Return the row indices that one column keeps."""
    present = np.flatnonzero(~np.asarray(column.is_null()))
    if len(present) <= max_points:
        return present
    if not (pa.types.is_floating(column.type) or pa.types.is_integer(column.type)):
        return spread(present, max_points)

    values = column.to_numpy(zero_copy_only=False)[present].astype(np.float64)
    finite = np.isfinite(values)
    per_bucket = 4 if finite.all() else 5
    buckets = max(1, max_points // per_bucket)
    chosen = _bucket_extremes(values, finite, buckets)
    # Smooth or monotonic series share points between first/last and min/max, so
    # more buckets fit in the budget; two refinements use most of it.
    for _ in range(2):
        if len(chosen) >= max_points * 0.9:
            break
        more_buckets = buckets * max_points // max(len(chosen), 1)
        more = _bucket_extremes(values, finite, more_buckets)
        if len(more) > max_points:
            break
        chosen, buckets = more, more_buckets
    if len(chosen) > max_points:
        chosen = spread(chosen, max_points)
    return present[chosen]


def _bucket_extremes(values: np.ndarray, finite: np.ndarray, buckets: int) -> np.ndarray:
    """Return the positions of each bucket's first, last, min, max and first non-finite value."""
    bucket = (np.arange(len(values)) * buckets) // len(values)
    starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
    ends = np.r_[starts[1:], len(values)] - 1

    picks = [starts, ends]
    picks.append(_first_match(bucket, np.where(finite, values, np.inf), np.minimum, starts))
    picks.append(_first_match(bucket, np.where(finite, values, -np.inf), np.maximum, starts))
    non_finite = np.flatnonzero(~finite)
    if len(non_finite):
        _, first = np.unique(bucket[non_finite], return_index=True)
        picks.append(non_finite[first])
    return np.unique(np.concatenate(picks))


def _first_match(bucket: np.ndarray, values: np.ndarray, reduce, starts: np.ndarray) -> np.ndarray:
    """Return, per bucket, the position of the first value equal to its reduction."""
    extremes = reduce.reduceat(values, starts)
    hits = np.flatnonzero((values == extremes[bucket]) & np.isfinite(values))
    if len(hits) == 0:
        return hits
    _, first = np.unique(bucket[hits], return_index=True)
    return hits[first]


def spread(indices: np.ndarray, count: int) -> np.ndarray:
    """Pick ``count`` evenly spread entries, the first and last included."""
    if len(indices) <= count:
        return indices
    positions = np.unique(np.linspace(0, len(indices) - 1, count).round().astype(np.int64))
    return indices[positions]
