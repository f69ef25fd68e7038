"""Histograms of a run, parsed from the rows of its ``histograms`` table.

The logger writes one row per tag and step: ``step``, ``timestamp``, ``tag``,
``total`` and the bin ``edges`` and ``counts`` as JSON arrays inside strings.
:class:`HistogramSeries` parses those strings once per row and keeps the result
while the run's table only grows.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np
import orjson
import pyarrow as pa

from .downsample import spread
from .runtable import RunTable
from .tables import STEP

log = logging.getLogger(__name__)

TAG = "tag"
EDGES = "edges"
COUNTS = "counts"

#: One parsed histogram: its step (None when logged without one), edges and counts.
Histogram = tuple[Any, np.ndarray, np.ndarray]


class HistogramSeries:
    """The parsed histograms of one run, by tag, in the order of the table's rows.

    :meth:`read` parses only the rows added since the previous call while the
    run's table keeps its earlier rows (see :attr:`RunTable.generation`), and
    parses everything again after the table was rebuilt.
    """

    def __init__(self, run_table: RunTable):
        self.run_table = run_table
        self._lock = threading.Lock()
        self._generation: int | None = None
        self._rows = 0
        self._by_tag: dict[str, list[Histogram]] = {}
        self.nbytes = 0

    def read(self) -> dict[str, list[Histogram]]:
        """Return ``{tag: [(step, edges, counts)]}``; raise UnreadableFile like RunTable.read.

        The lists are copies, but the arrays in them are shared with later
        calls: callers must not change them.
        """
        table, generation, _ = self.run_table.read_rows()
        with self._lock:
            if generation != self._generation:
                self._generation, self._rows, self._by_tag, self.nbytes = generation, 0, {}, 0
            if table.num_rows > self._rows:
                self._parse(table.slice(self._rows))
                self._rows = table.num_rows
            return {tag: list(histograms) for tag, histograms in self._by_tag.items()}

    def _parse(self, rows: pa.Table) -> None:
        names = rows.column_names
        if TAG not in names or EDGES not in names or COUNTS not in names:
            return
        steps = rows.column(STEP).to_pylist()
        tags = rows.column(TAG).to_pylist()
        edges_texts = rows.column(EDGES).to_pylist()
        counts_texts = rows.column(COUNTS).to_pylist()
        dropped = 0
        for step, tag, edges_text, counts_text in zip(steps, tags, edges_texts, counts_texts):
            edges, counts = parse_numbers(edges_text), parse_numbers(counts_text)
            if not isinstance(tag, str) or edges is None or counts is None or len(edges) != len(counts) + 1:
                dropped += 1
                continue
            self._by_tag.setdefault(tag, []).append((step, edges, counts))
            self.nbytes += edges.nbytes + counts.nbytes + 200  # 200: an estimate of the Python objects.
        if dropped:
            log.warning("Skipped %d histogram rows of %s without a tag, or whose edges and counts are "
                        "not JSON arrays of numbers with one more edge than counts",
                        dropped, self.run_table.folder)


def parse_numbers(text: Any) -> np.ndarray | None:
    """Parse a JSON array of numbers; return None for anything else.

    Integers give an int64 array (float64 when one does not fit), and an array
    with a fraction or ``null`` (the logger's NaN or ±Inf) gives float64 with
    NaN for each ``null``.
    """
    if not isinstance(text, (str, bytes)):
        return None
    try:
        values = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(values, list):
        return None
    if all(type(value) is int for value in values):
        try:
            return np.array(values, dtype=np.int64)
        except OverflowError:
            return np.array(values, dtype=np.float64)
    if not all(type(value) in (int, float) or value is None for value in values):
        return None
    return np.array([np.nan if value is None else value for value in values], dtype=np.float64)


def select(by_tag: dict[str, list[Histogram]], tags: list[str] | None, max_steps: int) -> dict[str, list[dict]]:
    """Return ``{tag: [{step, edges, counts}]}`` for the given tags (all when None), sorted by tag.

    With ``max_steps`` > 0, each tag keeps at most that many histograms, evenly
    spread over its rows, the first and last included.
    """
    requested = sorted(by_tag) if tags is None else sorted(set(tags) & set(by_tag))
    selected = {}
    for tag in requested:
        histograms = by_tag[tag]
        if max_steps > 0 and len(histograms) > max_steps:
            histograms = [histograms[i] for i in spread(np.arange(len(histograms)), max_steps)]
        selected[tag] = [{"step": step, "edges": edges, "counts": counts} for step, edges, counts in histograms]
    return selected


def encode(selected: dict[str, list[dict]]) -> bytes:
    """Encode :func:`select`'s result as JSON; NaN and ±Inf become ``null``."""
    return orjson.dumps(selected, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)
