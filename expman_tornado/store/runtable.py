"""One run's metric table, kept up to date as its files change."""

from __future__ import annotations

import itertools
import os
import threading

import pyarrow as pa
import pyarrow.compute as pc

from . import tables
from .files import FileCache, Identity, ParseError, UnreadableFile, identity_of

#: Source of :attr:`RunTable.generation` numbers, unique across all tables of the process.
_GENERATIONS = itertools.count(1)


#: Chunks a table may hold (one per appended batch or so) before they are combined.
MAX_CHUNKS = 512


class RunTable:
    """All rows of one kind of table (``vectors``, ``system``, …) of one run folder.

    :meth:`read` stats the files and returns the cached table while none
    changed. When the only change is rows appended to the live segments, with
    steps after every step seen so far (the usual case while a run trains), it
    decodes only the new bytes and appends them, so an update costs the same at
    step 1,000 and at step 1,000,000. Any other change (a new or rewritten
    parquet file, a step logged again, a replaced segment) rebuilds the table
    with :func:`tables.combine`. Histogram rows are identified by tag and step
    (see :data:`tables.GROUP_COLUMNS`), so "after every step seen so far" holds
    per tag for them.
    """

    def __init__(self, folder: str, kind: str, files: FileCache, root: str | None = None):
        self.folder = folder
        self.kind = kind
        self.root = root
        self.group = tables.GROUP_COLUMNS.get(kind)
        self._files = files
        self._lock = threading.Lock()
        self._readers: dict[str, tables.SegmentReader] = {}
        self._key: tuple | None = None
        self._table: pa.Table | None = None
        # The largest step of each group value (key None for kinds without groups).
        self._max_steps: dict = {}
        #: A number that changes on every rebuild and is never used by another
        #: table. While it is unchanged, the rows of an earlier read are still the
        #: first rows of the table, so a reader that keeps something per row
        #: needs to handle only the rows after them.
        self.generation = 0
        # How many record batches of each segment the table holds. Readers keep
        # every batch they decoded, so an update that fails loses none of them.
        self._used: dict[str, int] = {}

    def files_key(self) -> tuple:
        """Return the identities of the files the table is made of (stat calls only)."""
        return self._stat_files()[3]

    @property
    def version(self) -> tuple | None:
        """The identities of the files the table was last read from."""
        return self._key

    @property
    def nbytes(self) -> int:
        """Bytes of the table held in memory (0 before the first read)."""
        return self._table.nbytes if self._table is not None else 0

    def _stat_files(self) -> tuple:
        parquet_path, segment_paths = tables.metric_files(self.folder, self.kind, inside=self.root)
        segments = tables.stat_identities(segment_paths)
        parquet_identity = _identity_or_none(parquet_path)
        return parquet_path, segments, parquet_identity, (parquet_identity, tuple(segments))

    def read(self) -> pa.Table:
        """Return every row; raise UnreadableFile when no good copy can be had."""
        return self.read_with_generation()[0]

    def read_with_generation(self) -> tuple[pa.Table, int]:
        """Return every row and the :attr:`generation` of that table, read together."""
        parquet_path, segments, parquet_identity, key = self._stat_files()

        with self._lock:
            if key == self._key and self._table is not None:
                return self._table, self.generation
            update = None
            if self._table is not None and self._only_appended(key):
                update = self._append(segments)
            if update is None:
                update = self._rebuild(parquet_path, parquet_identity, segments)
                self.generation = next(_GENERATIONS)
            self._table, self._max_steps, self._used = update
            self._key = key
            present = dict(segments)
            self._readers = {p: r for p, r in self._readers.items() if p in present}
            return self._table, self.generation

    def _only_appended(self, key: tuple) -> bool:
        """Whether the change since the last read is only bytes added to segments."""
        old_parquet, old_segments = self._key  # type: ignore[misc]
        new_parquet, new_segments = key
        if old_parquet != new_parquet or len(new_segments) < len(old_segments):
            return False
        for (old_path, old), (new_path, new) in zip(old_segments, new_segments):
            if old_path != new_path or old.inode != new.inode or new.size < old.size:
                return False
        if new_parquet is not None and any(i.mtime_ns <= new_parquet.mtime_ns for _, i in new_segments):
            return False
        return True

    def _append(self, segments: list[tuple[str, Identity]]) -> tuple | None:
        """Return the table with the segments' new rows appended, or None if it needs a rebuild."""
        new_tables = []
        used = dict(self._used)
        unchanged = dict(self._key[1]) if self._key is not None else {}
        for path, identity in segments:
            if unchanged.get(path) == identity:
                continue  # A live run makes a segment per flush or so: read only the changed ones.
            reader = self._reader(path)
            reader.read()
            batches = reader.batches
            if len(batches) < used.get(path, 0):
                return None  # The segment was replaced since the table was built.
            if len(batches) > used.get(path, 0):
                new_tables.append(self._normalize(path, pa.Table.from_batches(batches[used.get(path, 0):])))
            used[path] = len(batches)
        if not new_tables:
            return self._table, self._max_steps, used
        new_rows = tables.concat(new_tables)
        max_steps = dict(self._max_steps)
        for key, (low, high, count, distinct) in tables.step_ranges(new_rows, self.group).items():
            if low is None:
                continue  # Rows without a step are never merged.
            if count != distinct:
                return None
            if max_steps.get(key) is not None and low <= max_steps[key]:
                return None
            max_steps[key] = high
        table = tables.concat([self._table, new_rows])
        if table.num_columns and table.column(0).num_chunks > MAX_CHUNKS:
            table = table.combine_chunks()  # Once per MAX_CHUNKS appends, so slicing stays fast.
        return table, max_steps, used

    def _rebuild(self, parquet_path, parquet_identity, segments) -> tuple:
        parquet = None
        if parquet_path is not None and parquet_identity is not None:
            try:
                # While the file is torn, its last good copy is served: segments are
                # compared with that copy's time, not with the torn file's.
                parquet, parquet_identity = self._files.load_version(parquet_path, tables.read_parquet, "parquet")
            except FileNotFoundError:
                parquet_identity = None
            except UnreadableFile:
                if not segments:
                    raise
                # A parquet file still being written at close: the segments hold its rows.
                parquet_identity = None
        segment_tables = []
        used = {}
        for path, ident in segments:
            reader = self._reader(path)
            table, _ = reader.read()
            used[path] = len(reader.batches)
            if table.num_columns:
                segment_tables.append((ident, self._normalize(path, table)))
        table = tables.combine(parquet, parquet_identity, segment_tables, self.group)
        return table, self._max_steps_of(table), used

    def _max_steps_of(self, table: pa.Table) -> dict:
        if self.group is None:
            steps = table.column(tables.STEP).drop_null()
            return {None: pc.max(steps).as_py() if len(steps) else None}
        return {key: high for key, (_, high, _, _) in tables.step_ranges(table, self.group).items()}

    def _normalize(self, path: str, table: pa.Table) -> pa.Table:
        try:
            return tables.normalize(table)
        except ParseError as exc:
            raise UnreadableFile(path, str(exc)) from None

    def _reader(self, path: str) -> tables.SegmentReader:
        reader = self._readers.get(path)
        if reader is None:
            reader = self._readers[path] = tables.SegmentReader(path)
        return reader


def _identity_or_none(path: str | None) -> Identity | None:
    if path is None:
        return None
    try:
        return identity_of(os.stat(path))
    except FileNotFoundError:
        return None
