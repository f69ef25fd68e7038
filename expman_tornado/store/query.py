"""Selecting rows and columns of a metric table, as the metrics route's parameters ask."""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from .downsample import downsample
from .tables import STEP, TIMESTAMP


@dataclass(frozen=True)
class RowQuery:
    """The row and column selection of a metrics request."""

    since_step: int | None = None
    until_step: int | None = None
    columns: tuple[str, ...] | None = None
    max_points: int = 0

    def apply(self, table: pa.Table) -> pa.Table:
        """Return the selected rows; a row without a step never passes a step bound."""
        if self.columns is not None:
            wanted = [c for c in self.columns if c in table.column_names and c not in (STEP, TIMESTAMP)]
            table = table.select([STEP, TIMESTAMP] + list(dict.fromkeys(wanted)))
        if self.since_step is not None:
            table = table.filter(pc.fill_null(pc.greater(table.column(STEP), self.since_step), False))
        if self.until_step is not None:
            table = table.filter(pc.fill_null(pc.less_equal(table.column(STEP), self.until_step), False))
        if self.max_points > 0:
            table = downsample(table, self.max_points)
        return table
