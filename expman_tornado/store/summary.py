"""Per-metric summaries of a run's metric table, for the runs listing."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from .tables import STEP, TIMESTAMP


def best_values(table: pa.Table) -> dict[str, dict]:
    """Return ``{metric: {min, min_step, max, max_step}}`` over the finite values of each metric.

    Only integer and floating-point columns count. NaN, ±Inf and nulls are
    skipped, so a metric without a finite value has no entry. ``min_step`` and
    ``max_step`` are the steps of the first rows holding the extreme values
    (None for a row without a step). Integers stay exact.
    """
    names = [name for name in table.column_names if name not in (STEP, TIMESTAMP)]
    floats = [name for name in names if pa.types.is_floating(table.schema.field(name).type)]
    integers = [name for name in names if pa.types.is_integer(table.schema.field(name).type)]
    extremes = {**_float_extremes(table, floats), **_integer_extremes(table, integers)}
    steps = table.column(STEP)
    best = {}
    for name in names:
        if name not in extremes:
            continue
        low, low_row, high, high_row = extremes[name]
        if pa.types.is_float32(table.schema.field(name).type):
            # The shortest decimal that is this float32, as the metric rows show it.
            low, high = float(str(np.float32(low))), float(str(np.float32(high)))
        best[name] = {"min": low, "min_step": steps[low_row].as_py(),
                      "max": high, "max_step": steps[high_row].as_py()}
    return best


def merge_best(earlier: dict[str, dict], later: dict[str, dict]) -> dict[str, dict]:
    """Return the best values of two consecutive parts of a table from those of each part.

    On a tie the earlier part's row is kept, as :func:`best_values` keeps the
    first row holding an extreme value.
    """
    merged = dict(earlier)
    for name, values in later.items():
        before = merged.get(name)
        if before is None:
            merged[name] = values
            continue
        merged[name] = dict(before)
        if values["min"] < before["min"]:
            merged[name].update(min=values["min"], min_step=values["min_step"])
        if values["max"] > before["max"]:
            merged[name].update(max=values["max"], max_step=values["max_step"])
    return merged


def _float_extremes(table: pa.Table, names: list[str]) -> dict[str, tuple]:
    """Return ``{name: (min, its row, max, its row)}`` of floating-point columns with a finite value.

    A runs listing computes this for every metric of every run, so the usual
    column, without NaN or ±Inf, costs two numpy passes and no copy.
    """
    extremes = {}
    for name in names:
        # to_numpy turns nulls into NaN, which is skipped like NaN itself.
        values = table.column(name).to_numpy(zero_copy_only=False)
        if len(values) == 0:
            continue
        low_row, high_row = int(np.argmin(values)), int(np.argmax(values))
        if not (np.isfinite(values[low_row]) and np.isfinite(values[high_row])):
            # argmin and argmax return the first NaN when there is one, and may pick ±Inf.
            finite = np.isfinite(values)
            if not finite.any():
                continue
            low_row = int(np.argmin(np.where(finite, values, np.inf)))
            high_row = int(np.argmax(np.where(finite, values, -np.inf)))
        extremes[name] = (values[low_row].item(), low_row, values[high_row].item(), high_row)
    return extremes


def _integer_extremes(table: pa.Table, names: list[str]) -> dict[str, tuple]:
    """Return ``{name: (min, its row, max, its row)}`` of integer columns with a non-null value."""
    extremes = {}
    for name in names:
        column = table.column(name)
        if column.null_count == len(column):
            continue
        values = column.fill_null(0).to_numpy(zero_copy_only=False)
        present = ~np.asarray(column.is_null())
        info = np.iinfo(values.dtype)
        low_row = int(np.argmin(np.where(present, values, info.max)))
        high_row = int(np.argmax(np.where(present, values, info.min)))
        extremes[name] = (values[low_row].item(), low_row, values[high_row].item(), high_row)
    return extremes
