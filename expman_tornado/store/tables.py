"""Metric tables: Arrow IPC segments and parquet files read into one table.

A run's metric rows come from ``vectors.parquet`` (older writers:
``metrics.parquet``) and, while the run is live, from the Arrow IPC stream
segments ``vectors-0000.arrow``, ``vectors-0001.arrow``, … The rules for
combining them are in :func:`combine`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from stat import S_ISREG
from typing import NamedTuple

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from .files import Identity, ParseError
from .filesystem import LOCAL, LocalFilesystem, ObjectFilesystem, identity_of
from .names import is_inside

log = logging.getLogger(__name__)

STEP = "step"
TIMESTAMP = "timestamp"
TIMESTAMP_TYPE = pa.timestamp("us", tz="UTC")

_SEGMENT = re.compile(r"^(?P<kind>vectors|histograms|system)-(?P<number>\d+)\.arrow$")

#: The column that, with the step, identifies a row of a kind of table. The
#: logger writes one histogram per tag and step, so histogram rows of different
#: tags at one step are never merged. Other kinds are identified by the step alone.
GROUP_COLUMNS = {"histograms": "tag"}


def segment_kind(name: str) -> str | None:
    """Return ``vectors``, ``histograms`` or ``system`` for a segment file name."""
    match = _SEGMENT.match(name)
    return match.group("kind") if match else None


def describe_columns(table: pa.Table) -> list[dict]:
    """Return the name and Arrow type of each column, as the run details show them."""
    return [{"name": field.name, "type": str(field.type)} for field in table.schema]


def segment_number(name: str) -> int:
    match = _SEGMENT.match(name)
    return int(match.group("number")) if match else -1


#: Parquet files up to this size are read by the calling thread alone, without
#: pre-buffering. For a file of a few rows, handing the reads and the column
#: decoding to pyarrow's thread pools costs more than the work: 1.1 against 0.35 ms
#: per file for the runs of benchmarks/stores.py (pyarrow 26, 2 cores).
SMALL_PARQUET_BYTES = 1 << 20


def read_parquet(path: str, filesystem: LocalFilesystem | ObjectFilesystem = LOCAL) -> pa.Table:
    """Read a whole metric parquet file; raise ParseError while it is torn or empty.

    On object storage a small file is fetched in one request and a larger one
    is read in place by byte ranges (footer first, then the column chunks).
    """
    opened = None
    try:
        if filesystem.is_local:
            source = path
            small = os.path.getsize(path) <= SMALL_PARQUET_BYTES
        else:
            identity = filesystem.stat(path)
            small = identity is not None and identity.size <= SMALL_PARQUET_BYTES
            source = opened = pa.BufferReader(filesystem.read_bytes(path)) if small else filesystem.open_input(path)
        # ParquetFile, not read_table: it also reads a file with two columns of one name.
        with pq.ParquetFile(source, pre_buffer=not small) as parquet_file:
            table = parquet_file.read(use_threads=not small)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise ParseError(str(exc).splitlines()[0] if str(exc) else "invalid parquet") from None
    finally:
        if opened is not None:
            opened.close()
    return normalize(table)


def normalize(table: pa.Table) -> pa.Table:
    """Give a metric table the types the API promises; raise ParseError if it cannot have them.

    ``step`` becomes int64 and ``timestamp`` timestamp[us, UTC]; a naive timestamp
    is read as UTC and another time zone is converted. Dictionary-encoded columns
    are decoded. Numbers, booleans, strings and times keep their type, so int64
    stays exact. A column of another type (binary, decimal, duration, nested)
    becomes text, so that every format can carry it. Of two columns with one
    name, the first is kept.
    """
    columns, names = [], []
    try:
        for name, column in zip(table.column_names, table.columns):
            if name in names:
                continue
            if pa.types.is_dictionary(column.type):
                column = column.cast(column.type.value_type)
            if name == STEP:
                column = _as_steps(column)
            elif name == TIMESTAMP:
                column = _as_utc_micros(column)
            else:
                column = _as_metric(column)
            columns.append(column)
            names.append(name)
    except (pa.ArrowException, ValueError, TypeError) as exc:
        raise ParseError("column %r: %s" % (name, str(exc).splitlines()[0] if str(exc) else exc)) from None
    table = pa.table(columns, names=names) if columns else pa.table({})
    if STEP not in table.column_names:
        table = table.add_column(0, STEP, pa.nulls(table.num_rows, pa.int64()))
    if TIMESTAMP not in table.column_names:
        table = table.add_column(1, TIMESTAMP, pa.nulls(table.num_rows, TIMESTAMP_TYPE))
    order = [STEP, TIMESTAMP] + [c for c in table.column_names if c not in (STEP, TIMESTAMP)]
    return table.select(order)


def _as_steps(column: pa.ChunkedArray) -> pa.ChunkedArray:
    if column.type == pa.int64():
        return column
    if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type) or pa.types.is_null(column.type)):
        raise ParseError("column 'step' must contain integers, found type %s" % column.type)
    try:
        return column.cast(pa.int64())  # A safe cast: 1.5 or 2**64-1 is an error, not a guess.
    except pa.ArrowInvalid:
        raise ParseError("column 'step' must contain int64 integers, found a fraction or an out-of-range value") from None


def _as_utc_micros(column: pa.ChunkedArray) -> pa.ChunkedArray:
    kind = column.type
    if pa.types.is_timestamp(kind):
        if kind.tz is None:
            column = column.cast(pa.timestamp(kind.unit)).cast(pa.timestamp(kind.unit, tz="UTC"))
        return _within_years(column.cast(TIMESTAMP_TYPE, safe=False))
    if pa.types.is_integer(kind):
        # A bare integer timestamp is taken as microseconds since the epoch.
        return _within_years(column.cast(pa.int64()).cast(TIMESTAMP_TYPE))
    return pa.chunked_array([pa.nulls(len(column), TIMESTAMP_TYPE)])


#: Microseconds since the epoch of 0001-01-01 and of the end of 9999-12-31 (UTC).
_EARLIEST_MICROS = -62_135_596_800_000_000
_LATEST_MICROS = 253_402_300_799_999_999


def _within_years(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Return timestamps with those outside the years 1 to 9999 made null.

    Such values come only from damaged or foreign files. ISO-8601 text and
    Python's datetime cannot show them, and polars fails when it formats the
    most extreme ones.
    """
    micros = column.cast(pa.int64())
    outside = pc.or_(pc.less(micros, _EARLIEST_MICROS), pc.greater(micros, _LATEST_MICROS))
    if not pc.any(outside).as_py():
        return column
    return pc.if_else(outside, pa.scalar(None, TIMESTAMP_TYPE), column)


def _as_metric(column: pa.ChunkedArray) -> pa.ChunkedArray:
    kind = column.type
    if pa.types.is_large_string(kind) or _is_string_view(kind):
        return column.cast(pa.string())
    if pa.types.is_float16(kind):
        return column.cast(pa.float32())
    if (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)
            or pa.types.is_string(kind) or pa.types.is_timestamp(kind) or pa.types.is_date(kind)
            or pa.types.is_null(kind)):
        return column
    return pa.chunked_array([pa.array([_as_text(v) for v in column.to_pylist()], pa.string())])


def _is_string_view(kind: pa.DataType) -> bool:
    is_string_view = getattr(pa.types, "is_string_view", None)  # pyarrow 16 and later
    return bool(is_string_view and is_string_view(kind))


def _as_text(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return value.hex()
    if isinstance(value, (list, dict)):
        return json.dumps(value, default=str, ensure_ascii=False)
    return str(value)


class SegmentReader:
    """Incremental reader of one growing Arrow IPC stream segment.

    Each :meth:`read` decodes only the bytes appended since the previous one. A
    record batch whose bytes are not all written yet is left for the next read.
    If the file is replaced or shrinks, reading starts again from its start.

    A stream with dictionary-encoded columns (written by other tools, not by the
    expman logger) carries dictionary messages that pyarrow decodes only as part
    of a whole stream, so such a segment is decoded again from its start.
    A message that is complete but cannot be decoded is treated like one not
    written yet: the rows before it are served.
    """

    def __init__(self, path: str, filesystem: LocalFilesystem | ObjectFilesystem = LOCAL):
        self.path = path
        self.fs = filesystem
        self._lock = threading.Lock()
        self._reset(None)

    def _reset(self, inode: int | None) -> None:
        self._inode = inode
        self._offset = 0
        self._schema: pa.Schema | None = None
        self._batches: list[pa.RecordBatch] = []
        self._table: pa.Table | None = None
        self._complete = b""  # Bytes of whole messages, kept only for dictionary streams.
        self._checked_schema: pa.Schema | None = None
        self._dictionaries = False
        self._warned_at: int | None = None

    @property
    def offset(self) -> int:
        """Bytes of the segment decoded so far."""
        return self._offset

    @property
    def batches(self) -> list[pa.RecordBatch]:
        """Every record batch read so far, in file order."""
        with self._lock:
            return list(self._batches)

    def read(self) -> tuple[pa.Table, list[pa.RecordBatch]]:
        """Return the whole table read so far and the batches this call added."""
        with self._lock:
            try:
                new_bytes = self._read_new_bytes()
            except OSError:  # Deleted at close or unreadable, so the rows read before are kept.
                return self._current_table(), []
            new_batches = self._decode(new_bytes) if new_bytes else []
            if new_batches:
                self._batches.extend(new_batches)
                self._table = None
            return self._current_table(), new_batches

    def _read_new_bytes(self) -> bytes:
        inode, start, data = self.fs.read_appended(self.path, self._offset, self._inode)
        if inode != self._inode or start != self._offset:
            self._reset(inode)  # Replaced or shorter: ``data`` is the file from its start.
        return data

    def _decode(self, data: bytes) -> list[pa.RecordBatch]:
        source = pa.BufferReader(pa.py_buffer(data))
        reader = ipc.MessageReader.open_stream(source)
        messages = []
        consumed = 0
        while True:
            try:
                message = reader.read_next_message()
            except StopIteration:
                break
            except (OSError, pa.ArrowInvalid):
                break  # The last message is not all written yet.
            try:
                if message.type == "schema":
                    self._schema = ipc.read_schema(message)
                elif message.type == "record batch" and self._schema is not None and not self._has_dictionaries():
                    messages.append(ipc.read_record_batch(message, self._schema))
            except (pa.ArrowException, ValueError) as exc:
                self._warn_once(self._offset + consumed, exc)
                break
            consumed = source.tell()
        self._offset += consumed
        if self._schema is not None and self._has_dictionaries():
            return self._decode_whole_stream(data[:consumed])
        return messages

    def _has_dictionaries(self) -> bool:
        if self._checked_schema is not self._schema:  # Looked at once per schema, not per message.
            self._checked_schema = self._schema
            self._dictionaries = any(pa.types.is_dictionary(field.type) for field in self._schema or [])
        return self._dictionaries

    def _decode_whole_stream(self, new_complete: bytes) -> list[pa.RecordBatch]:
        self._complete += new_complete
        try:
            every_batch = list(ipc.open_stream(self._complete))
        except (pa.ArrowException, ValueError) as exc:
            self._warn_once(self._offset, exc)
            return []
        return every_batch[len(self._batches):]

    def _warn_once(self, offset: int, exc: Exception) -> None:
        if self._warned_at != offset:
            self._warned_at = offset
            log.warning("Failed to decode %s at byte %d (%s), so only the rows before it are served",
                        self.path, offset, exc)

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
    try:
        combined = pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowTypeError, pa.ArrowInvalid):
        combined = pa.concat_tables(_first_types_win(tables), promote_options="permissive")
    return combined.select(order)


def _first_types_win(tables: list[pa.Table]) -> list[pa.Table]:
    """Give each column the type it first had, as the writer does when it closes a run.

    The logger gives a column the type of its first value. At close, it writes a
    number logged under a string metric as text and drops a string logged under a
    number metric. Chunks of another type are converted the same way here, and
    become null when no cast exists.
    """
    first: dict[str, pa.DataType] = {}
    for table in tables:
        for field in table.schema:
            if not pa.types.is_null(field.type):
                first.setdefault(field.name, field.type)
    fixed = []
    for table in tables:
        for index, field in enumerate(table.schema):
            wanted = first.get(field.name)
            if wanted is None or field.type == wanted:
                continue
            column = pa.nulls(table.num_rows, wanted)
            if not (pa.types.is_string(field.type) or pa.types.is_large_string(field.type)):
                try:
                    column = table.column(index).cast(wanted)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
                    pass
            table = table.set_column(index, pa.field(field.name, wanted), column)
        fixed.append(table)
    return fixed


def empty_table() -> pa.Table:
    return pa.table(
        {STEP: pa.array([], pa.int64()), TIMESTAMP: pa.array([], TIMESTAMP_TYPE)}
    )


#: An empty list of merge targets, for a table where no row was merged into another (see :func:`merge_steps_noting`).
NO_MERGES = np.empty(0, np.int64)
NO_MERGES.flags.writeable = False


def merge_steps(table: pa.Table, group: str | None = None) -> pa.Table:
    """Merge rows that share a step, as the expman writer does when it closes a run.

    The merged row stays where the step first appeared and takes the newer
    timestamp; in each column the later value wins unless it is null or NaN.
    Rows without a step are never merged. With ``group`` (a column name, see
    :data:`GROUP_COLUMNS`), only rows that also share that column's value merge.
    """
    return merge_steps_noting(table, group)[0]


def merge_steps_noting(table: pa.Table, group: str | None = None) -> tuple[pa.Table, np.ndarray]:
    """Return :func:`merge_steps` and, for each row merged into an earlier one, the index of that row.

    The indexes are those of the merged table, in the order of the rows merged
    in: a row merged into row 3 and then one merged into row 1 give ``[3, 1]``.
    """
    if group is not None and group not in table.column_names:
        group = None
    if group is None:
        steps = table.column(STEP).drop_null()
        if len(steps) == 0 or pc.count_distinct(steps).as_py() == len(steps):
            return table, NO_MERGES
    elif all(count == distinct for _, _, count, distinct in step_ranges(table, group).values()):
        return table, NO_MERGES

    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    # A row without a step forms its own group, keyed by its row number. The first
    # key column keeps those keys apart from real steps, negative ones included.
    no_step = pl.col(STEP).is_null()
    no_step_key, step_key = _unused_name(frame, "__no_step"), _unused_name(frame, "__key")
    keys = [no_step.alias(no_step_key),
            pl.when(no_step).then(pl.int_range(pl.len(), dtype=pl.Int64)).otherwise(pl.col(STEP)).alias(step_key)]
    key_names = [no_step_key, step_key]
    if group is not None:
        key_names.append(_unused_name(frame, "__group"))
        keys.append(pl.col(group).alias(key_names[-1]))
    frame = frame.with_columns(keys)
    first = pl.struct(key_names).is_first_distinct()
    # A group's row in the merged table is where its first row was among the first rows.
    target = _unused_name(frame, "__target")
    firsts = frame.filter(first).select(key_names).with_row_index(target)
    later = frame.filter(~first).select(key_names)
    targets = np.asarray(later.join(firsts, on=key_names, how="left", maintain_order="left").get_column(target),
                         dtype=np.int64)
    aggregations = [pl.col(STEP).first(), pl.col(TIMESTAMP).last()]
    for name, dtype in frame.schema.items():
        if name in (STEP, TIMESTAMP) or name not in table.column_names:
            continue
        values = pl.col(name)
        present = values.fill_nan(None) if dtype.is_float() else values
        aggregations.append(pl.coalesce(present.drop_nulls().last(), values.last()).alias(name))
    merged = frame.group_by(key_names, maintain_order=True).agg(aggregations).drop(key_names)
    return merged.to_arrow().cast(table.schema), targets


def step_ranges(table: pa.Table, group: str | None = None) -> dict:
    """Return ``{group value: (min step, max step, steps, distinct steps)}`` of a table.

    Without ``group`` the only key is None. Null steps are not counted, and a
    group with no step has None as its min and max.
    """
    if group is None:
        # Live updates call this for every flush, and the compute functions cost
        # a fraction of a grouped aggregation.
        steps = table.column(STEP).drop_null()
        if len(steps) == 0:
            return {None: (None, None, 0, 0)}
        extremes = pc.min_max(steps)
        return {None: (extremes["min"].as_py(), extremes["max"].as_py(), len(steps),
                       pc.count_distinct(steps).as_py())}
    if group not in table.column_names:
        table = table.append_column(group, pa.nulls(table.num_rows, pa.string()))
    keys = [group]
    aggregated = table.select([STEP] + keys).group_by(keys).aggregate(
        [(STEP, "min"), (STEP, "max"), (STEP, "count"), (STEP, "count_distinct")]
    )
    ranges = {}
    for row in aggregated.to_pylist():
        ranges[row[group]] = (row["step_min"], row["step_max"], row["step_count"], row["step_count_distinct"])
    return ranges


def _unused_name(frame: pl.DataFrame, name: str) -> str:
    """Return ``name``, lengthened until no column of the frame has it."""
    while name in frame.columns:
        name += "_"
    return name


def combine(
    parquet: pa.Table | None,
    parquet_identity: Identity | None,
    segments: list[tuple[Identity, pa.Table]],
    group: str | None = None,
) -> tuple[pa.Table, np.ndarray]:
    """Combine a run's parquet file and its live segments into one table of rows.

    While a run is live, its rows are in the segments, merged by step. When the
    writer closes the run it writes the parquet file and then deletes the
    segments, so for a moment both exist: segments not newer than the parquet
    file are already in it and are skipped. Segments newer than the parquet file
    hold rows written after it (a resumed run) and follow its rows. The parquet
    file's own rows are served as written, repeated steps included. ``group``
    is passed on to :func:`merge_steps`.

    Return the table and, as :func:`merge_steps_noting` does, the index of
    the row that each segment row merged into an earlier one went to.
    """
    if parquet is not None and parquet_identity is not None:
        later = [t for ident, t in segments if ident.mtime_ns > parquet_identity.mtime_ns]
        if not later:
            return parquet, NO_MERGES
        merged, targets = merge_steps_noting(concat(later), group)
        return concat([parquet, merged]), targets + parquet.num_rows
    if segments:
        return merge_steps_noting(concat([t for _, t in segments]), group)
    return empty_table(), NO_MERGES


class MetricFiles(NamedTuple):
    """The files one kind of table of a run is read from, as one scan found them."""

    parquet: str | None
    parquet_identity: Identity | None
    #: ``(path, identity)`` of each segment, in segment number order.
    segments: tuple[tuple[str, Identity], ...]

    @property
    def key(self) -> tuple:
        """Return the identities of the files, which differ between any two states of them."""
        return self.parquet_identity, self.segments


def parquet_names(kind: str) -> tuple[str, ...]:
    """Return the names of the parquet file of a kind of table, the preferred one first."""
    return ("%s.parquet" % kind,) + (("metrics.parquet",) if kind == "vectors" else ())


def scan_metric_files(run_dir: str, kind: str = "vectors", inside: str | None = None,
                      filesystem: LocalFilesystem | ObjectFilesystem = LOCAL) -> MetricFiles:
    """Find and stat the parquet file and the segments of one kind of table.

    Only regular files count. With ``inside`` (the store root), a symlink that
    resolves outside that folder is left out. A missing or unreadable folder
    has no files.

    The parquet file is looked up by name after the segments are stat-ed, not
    taken from the listing: the writer creates it before it deletes the
    segments at close, so a listing that raced with that deletion (and may
    miss some segments) always comes with the parquet file that contains their rows.
    """
    prefix = kind + "-"
    if filesystem.is_local:
        try:
            with os.scandir(run_dir) as entries:
                found = [(entry, segment_number(entry.name)) for entry in entries if entry.name.startswith(prefix)]
        except OSError:  # Missing, not a folder, or not readable by this process.
            return MetricFiles(None, None, ())
        identities = {}
        for entry, number in found:
            if number >= 0 and segment_kind(entry.name) == kind:
                identity = _regular_identity(entry, inside)
                if identity is not None:
                    identities[entry.name] = identity
    else:
        identities = filesystem.scan_files(run_dir, prefix)
    numbered = []
    for name, identity in identities.items():
        number = segment_number(name)
        if number >= 0 and segment_kind(name) == kind:
            numbered.append((number, os.path.join(run_dir, name), identity))
    numbered.sort(key=lambda item: item[0])
    segments = tuple((path, identity) for _, path, identity in numbered)
    parquet, parquet_identity = find_parquet(run_dir, kind, inside, filesystem)
    return MetricFiles(parquet, parquet_identity, segments)


def find_parquet(run_dir: str, kind: str, inside: str | None = None,
                 filesystem: LocalFilesystem | ObjectFilesystem = LOCAL) -> tuple[str | None, Identity | None]:
    """Return the path and identity of the parquet file of a kind of table, or two Nones."""
    for name in parquet_names(kind):
        path = os.path.join(run_dir, name)
        identity = filesystem.stat_file(path, inside)
        if identity is not None:
            return path, identity
    return None, None


def stat_file(path: str, inside: str | None = None,
              filesystem: LocalFilesystem | ObjectFilesystem = LOCAL) -> Identity | None:
    """Return the identity of one regular file, or None (missing, not regular, or a link leaving ``inside``)."""
    return filesystem.stat_file(path, inside)


def _regular_identity(entry: os.DirEntry, inside: str | None) -> Identity | None:
    try:
        if entry.is_symlink() and inside is not None and not is_inside(entry.path, inside):
            return None
        stat = entry.stat()
    except OSError:
        return None
    return identity_of(stat) if S_ISREG(stat.st_mode) else None
