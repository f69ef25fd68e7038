"""Metric tables: Arrow IPC segments and parquet files read into one table.

A run's metric rows come from ``vectors.parquet`` (older writers:
``metrics.parquet``) and, while the run is live, from the Arrow IPC stream
segments ``vectors-0000.arrow``, ``vectors-0001.arrow``, … The rules for
combining them are in :func:`combine`.
"""

from __future__ import annotations

import logging
import os
import re
import threading

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from .files import Identity, ParseError, identity_of

log = logging.getLogger(__name__)

STEP = "step"
TIMESTAMP = "timestamp"
TIMESTAMP_TYPE = pa.timestamp("us", tz="UTC")

_SEGMENT = re.compile(r"^(?P<kind>vectors|histograms|system)-(?P<number>\d+)\.arrow$")


def segment_kind(name: str) -> str | None:
    """Return ``vectors``, ``histograms`` or ``system`` for a segment file name."""
    match = _SEGMENT.match(name)
    return match.group("kind") if match else None


def segment_number(name: str) -> int:
    match = _SEGMENT.match(name)
    return int(match.group("number")) if match else -1


def read_parquet(path: str) -> pa.Table:
    """Read a whole metric parquet file; raise ParseError while it is torn or empty."""
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, pa.ArrowIOError, OSError) as exc:
        raise ParseError(str(exc).splitlines()[0] if str(exc) else "invalid parquet") from None
    return normalize(table)


def normalize(table: pa.Table) -> pa.Table:
    """Give a metric table the types the API promises.

    ``step`` becomes int64 and ``timestamp`` timestamp[us, UTC]; a naive timestamp
    is read as UTC and another time zone is converted. Dictionary-encoded columns
    are decoded. Other columns keep their type (int64 stays exact).
    """
    columns = []
    for name, column in zip(table.column_names, table.columns):
        if pa.types.is_dictionary(column.type):
            column = column.cast(column.type.value_type)
        if name == STEP and column.type != pa.int64():
            column = column.cast(pa.int64())
        elif name == TIMESTAMP:
            column = _as_utc_micros(column)
        elif pa.types.is_large_string(column.type):
            column = column.cast(pa.string())
        columns.append(column)
    table = pa.table(columns, names=table.column_names)
    if STEP not in table.column_names:
        table = table.add_column(0, STEP, pa.nulls(table.num_rows, pa.int64()))
    if TIMESTAMP not in table.column_names:
        table = table.add_column(1, TIMESTAMP, pa.nulls(table.num_rows, TIMESTAMP_TYPE))
    order = [STEP, TIMESTAMP] + [c for c in table.column_names if c not in (STEP, TIMESTAMP)]
    return table.select(order)


def _as_utc_micros(column: pa.ChunkedArray) -> pa.ChunkedArray:
    kind = column.type
    if pa.types.is_timestamp(kind):
        if kind.tz is None:
            column = column.cast(pa.timestamp(kind.unit)).cast(pa.timestamp(kind.unit, tz="UTC"))
        return column.cast(TIMESTAMP_TYPE, safe=False)
    if pa.types.is_integer(kind):
        # A bare integer timestamp is taken as microseconds since the epoch.
        return column.cast(pa.int64()).cast(TIMESTAMP_TYPE)
    return pa.chunked_array([pa.nulls(len(column), TIMESTAMP_TYPE)])


class SegmentReader:
    """Incremental reader of one growing Arrow IPC stream segment.

    Each :meth:`read` decodes only the bytes appended since the previous one. A
    record batch whose bytes are not all written yet is left for the next read.
    If the file is replaced or shrinks, reading starts again from its start.
    """

    def __init__(self, path: str):
        self.path = path
        self._lock = threading.Lock()
        self._reset(None)

    def _reset(self, inode: int | None) -> None:
        self._inode = inode
        self._offset = 0
        self._schema: pa.Schema | None = None
        self._batches: list[pa.RecordBatch] = []
        self._table: pa.Table | None = None

    @property
    def offset(self) -> int:
        """Bytes of the segment decoded so far."""
        return self._offset

    def read(self) -> tuple[pa.Table, list[pa.RecordBatch]]:
        """Return the whole table read so far and the batches this call added."""
        with self._lock:
            try:
                with open(self.path, "rb") as f:
                    stat = os.fstat(f.fileno())
                    if stat.st_ino != self._inode or stat.st_size < self._offset:
                        self._reset(stat.st_ino)
                    f.seek(self._offset)
                    new_bytes = f.read()
            except FileNotFoundError:
                return self._current_table(), []
            new_batches = self._decode(new_bytes)
            if new_batches:
                self._batches.extend(new_batches)
                self._table = None
            return self._current_table(), new_batches

    def _decode(self, data: bytes) -> list[pa.RecordBatch]:
        source = pa.BufferReader(pa.py_buffer(data))
        reader = ipc.MessageReader.open_stream(source)
        batches = []
        consumed = 0
        while True:
            try:
                message = reader.read_next_message()
            except StopIteration:
                break
            except (OSError, pa.ArrowInvalid):
                break  # The last message is not all written yet.
            if message.type == "schema":
                self._schema = ipc.read_schema(message)
            elif message.type == "record batch" and self._schema is not None:
                batches.append(ipc.read_record_batch(message, self._schema))
            consumed = source.tell()
        self._offset += consumed
        return batches

    def _current_table(self) -> pa.Table:
        if self._table is None:
            if self._schema is None:
                self._table = pa.table({})
            else:
                self._table = pa.Table.from_batches(self._batches, schema=self._schema)
        return self._table


def concat(tables: list[pa.Table]) -> pa.Table:
    """Stack tables whose columns differ in order or presence (missing cells are null)."""
    tables = [t for t in tables if t.num_columns]
    if not tables:
        return empty_table()
    if len(tables) == 1:
        return tables[0]
    order: list[str] = []
    for table in tables:
        order.extend(c for c in table.column_names if c not in order)
    combined = pa.concat_tables(tables, promote_options="permissive")
    return combined.select(order)


def empty_table() -> pa.Table:
    return pa.table(
        {STEP: pa.array([], pa.int64()), TIMESTAMP: pa.array([], TIMESTAMP_TYPE)}
    )


def merge_steps(table: pa.Table) -> pa.Table:
    """Merge rows that share a step, as the expman writer does when it closes a run.

    The merged row stays where the step first appeared and takes the newer
    timestamp; in each column the later value wins unless it is null or NaN.
    Rows without a step are never merged.
    """
    steps = table.column(STEP)
    non_null = steps.drop_null()
    if len(non_null) == 0 or pc.count_distinct(non_null).as_py() == len(non_null):
        return table

    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    key = pl.when(pl.col(STEP).is_null()).then(-pl.int_range(1, pl.len() + 1)).otherwise(
        pl.col(STEP)
    )
    aggregations = [pl.col(STEP).first(), pl.col(TIMESTAMP).last()]
    for name, dtype in frame.schema.items():
        if name in (STEP, TIMESTAMP):
            continue
        values = pl.col(name)
        present = values.fill_nan(None) if dtype.is_float() else values
        aggregations.append(pl.coalesce(present.drop_nulls().last(), values.last()).alias(name))
    merged = (
        frame.with_columns(key.alias("__key"))
        .group_by("__key", maintain_order=True)
        .agg(aggregations)
        .drop("__key")
    )
    return merged.to_arrow().cast(table.schema)


def combine(
    parquet: pa.Table | None,
    parquet_identity: Identity | None,
    segments: list[tuple[Identity, pa.Table]],
) -> pa.Table:
    """Combine a run's parquet file and its live segments into one table of rows.

    While a run is live, its rows are in the segments, merged by step. When the
    writer closes the run it writes the parquet file and then deletes the
    segments, so for a moment both exist: segments not newer than the parquet
    file are already in it and are skipped. Segments newer than the parquet file
    hold rows written after it (a resumed run) and follow its rows. The parquet
    file's own rows are served as written, repeated steps included.
    """
    if parquet is not None and parquet_identity is not None:
        later = [t for ident, t in segments if ident.mtime_ns > parquet_identity.mtime_ns]
        if not later:
            return parquet
        return concat([parquet, merge_steps(concat(later))])
    if segments:
        return merge_steps(concat([t for _, t in segments]))
    return empty_table()


def metric_files(run_dir: str, kind: str = "vectors") -> tuple[str | None, list[str]]:
    """Return the parquet path (or None) and the segment paths of one kind of table."""
    try:
        names = os.listdir(run_dir)
    except (FileNotFoundError, NotADirectoryError):
        return None, []
    parquet = None
    candidates = ["%s.parquet" % kind] + (["metrics.parquet"] if kind == "vectors" else [])
    for name in candidates:
        if name in names and os.path.isfile(os.path.join(run_dir, name)):
            parquet = os.path.join(run_dir, name)
            break
    segments = sorted(
        (n for n in names if segment_kind(n) == kind), key=segment_number
    )
    return parquet, [os.path.join(run_dir, n) for n in segments]


def stat_identities(paths: list[str]) -> list[tuple[str, Identity]]:
    found = []
    for path in paths:
        try:
            found.append((path, identity_of(os.stat(path))))
        except FileNotFoundError:
            continue
    return found
