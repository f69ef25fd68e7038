"""One run's metric table, kept up to date as its files change."""

from __future__ import annotations

import itertools
import os
import threading
from typing import Collection, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import tables
from .files import FileCache, Identity, ParseError, UnreadableFile

#: Source of :attr:`RunTable.generation` numbers, unique across all tables of the process.
_GENERATIONS = itertools.count(1)


class Rows(NamedTuple):
    """A run's table as :meth:`RunTable.read_rows` returns it."""

    table: pa.Table
    #: :attr:`RunTable.generation` when the table was read.
    generation: int
    #: For each live segment row that was merged into an earlier row of the
    #: same step, the index of that row, in the order they were written. Only
    #: the rows of the segments count: a closed run's parquet file has none.
    merged_into: np.ndarray


#: Chunks appended to a table (one per appended batch or so) before they are
#: combined into one, so slicing and appending stay fast (see :meth:`RunTable._append`).
MAX_CHUNKS = 64


class RunTable:
    """All rows of one kind of table (``vectors``, ``system``, …) of one run folder.

    :meth:`read` stats the files and returns the cached table while none
    changed. When the only change is rows appended to the live segments, with
    steps after every step seen so far (the usual case while a run trains), it
    decodes only the new bytes and appends them, so an update costs the same at
    step 1,000 and at step 1,000,000. New rows of the last step, as from a
    second log_vector call for it, are merged with the last row alone. Any
    other change (a new or rewritten parquet file, a step before the last one
    logged again, a replaced segment) rebuilds the table with
    :func:`tables.combine`. Histogram rows are identified by tag and step (see
    :data:`tables.GROUP_COLUMNS`), so "after every step seen so far" holds per
    tag for them, and any step of a tag logged again rebuilds their table.
    """

    def __init__(self, folder: str, kind: str, files: FileCache, root: str | None = None):
        self.folder = folder
        self.kind = kind
        self.root = root
        #: The filesystem of the store, the one ``files`` reads through.
        self.fs = files.fs
        self.group = tables.GROUP_COLUMNS.get(kind)
        self._cache = files
        self._lock = threading.Lock()
        self._readers: dict[str, tables.SegmentReader] = {}
        self._files: tables.MetricFiles | None = None
        # The index of each segment of ``_files``, by file name.
        self._positions: dict[str, int] = {}
        self._table: pa.Table | None = None
        # The largest step of each group value (key None for kinds without groups).
        self._max_steps: dict = {}
        # See Rows.merged_into.
        self._merged_into = tables.NO_MERGES
        # Rows at the start of the table that come from the parquet file: a step
        # logged again after them is kept as a row of its own, not merged.
        self._parquet_rows = 0
        #: A number that changes on every rebuild and is never used by another
        #: table. While it is unchanged, the rows of an earlier read are still the
        #: first rows of the table, so a reader that keeps something per row
        #: needs to handle only the rows after them.
        self.generation = 0
        # How many record batches of each segment the table holds. Readers keep
        # every batch they decoded, so an update that fails loses none of them.
        self._used: dict[str, int] = {}
        # Rows at the start of the table that are already combined into few chunks,
        # and the chunks appended after them.
        self._settled_rows = 0
        self._tail_chunks = 0
        self._head_chunks = 0
        self._nbytes = 0

    def files_key(self) -> tuple:
        """Return the identities of the files the table is made of (one scan of the folder)."""
        return self._scan().key

    @property
    def version(self) -> tuple | None:
        """The identities of the files the table was last read from."""
        return self._files.key if self._files is not None else None

    @property
    def nbytes(self) -> int:
        """Bytes of the table held in memory (0 before the first read).

        Counted when the table is built and as rows are appended: asking pyarrow
        for the size of a table of many chunks takes longer than appending to it.
        """
        return self._nbytes

    def _scan(self) -> tables.MetricFiles:
        return tables.scan_metric_files(self.folder, self.kind, self.root, self.fs)

    def read(self, changed: Collection[str] | None = None) -> pa.Table:
        """Return every row; raise UnreadableFile when no good copy can be had.

        See :meth:`read_rows` for ``changed``.
        """
        return self.read_rows(changed).table

    def read_rows(self, changed: Collection[str] | None = None) -> Rows:
        """Return every row, with the :attr:`generation` of that table and the rows merged into, read together.

        Without ``changed`` the run folder is listed and every file of the table
        is stat-ed. The live hub, which gets the changed paths from the watcher,
        passes the names of the run's files changed since the last read as
        ``changed``. Then only those files, the parquet files and the newest
        segment are stat-ed, and the older segments are taken as they were, so
        the cost does not grow with the number of segments. Anything unexpected in that check (a segment
        gone or replaced, a new one numbered before the newest) falls back to
        a full scan.
        """
        with self._lock:
            found = self._check(changed) if changed is not None else None
            files, touched = found if found is not None else (self._scan(), None)
            if self._files is not None and files.key == self._files.key and self._table is not None:
                return Rows(self._table, self.generation, self._merged_into)
            if touched is None:
                touched = self._changed_segments(files)
            update = None
            if touched is not None:
                update = self._append(files, touched)
            if update is None:
                update = self._rebuild(files)
                self.generation = next(_GENERATIONS)
                self._nbytes = update[0].nbytes
                self._settled_rows, self._tail_chunks, self._head_chunks = update[0].num_rows, 0, 1
                present = {path for path, _ in files.segments}
                self._readers = {p: r for p, r in self._readers.items() if p in present}
            self._table, self._max_steps, self._used = update
            if found is None:
                self._positions = {os.path.basename(path): i for i, (path, _) in enumerate(files.segments)}
            else:
                for index in range(len(self._positions), len(files.segments)):
                    self._positions[os.path.basename(files.segments[index][0])] = index
            self._files = files
            return Rows(self._table, self.generation, self._merged_into)

    def _check(self, changed: Collection[str]) -> tuple[tables.MetricFiles, list[int]] | None:
        """Stat the files that may have changed since the last read.

        Return the files and the indexes of the segments whose identity changed,
        or None when a full scan is needed.
        """
        last = self._files
        if last is None or self._table is None:
            return None

        # Which known segments to stat (the newest always), and which new ones were named.
        segments = list(last.segments)
        positions = self._positions
        to_check = {len(segments) - 1} if segments else set()
        newest = tables.segment_number(os.path.basename(segments[-1][0])) if segments else -1
        added = []
        for name in changed:
            if name in positions:
                to_check.add(positions[name])
            elif tables.segment_kind(name) == self.kind:
                number = tables.segment_number(name)
                if number <= newest:
                    return None  # A segment numbered before the newest appeared or came back.
                added.append((number, name))

        touched = []
        for index in sorted(to_check):
            path, old = segments[index]
            identity = self.fs.stat_file(path, self.root)
            if identity is None or identity.inode != old.inode or identity.size < old.size:
                return None  # Gone or replaced: the table must be rebuilt from a full scan.
            if identity != old:
                segments[index] = (path, identity)
                touched.append(index)

        for _, name in sorted(added):
            path = os.path.join(self.folder, name)
            identity = self.fs.stat_file(path, self.root)
            if identity is not None:
                touched.append(len(segments))
                segments.append((path, identity))

        # Looked up last, as in tables.scan_metric_files.
        parquet_path, parquet_identity = tables.find_parquet(self.folder, self.kind, self.root, self.fs)
        if (parquet_path, parquet_identity) != (last.parquet, last.parquet_identity):
            return None
        return tables.MetricFiles(parquet_path, parquet_identity, tuple(segments)), touched

    def _changed_segments(self, files: tables.MetricFiles) -> list[int] | None:
        """Return the indexes of the segments that changed since the last read.

        That is when the change is only bytes added to segments. Return None
        when the table must be rebuilt.
        """
        last = self._files
        if last is None or self._table is None or last.parquet_identity != files.parquet_identity:
            return None
        if len(files.segments) < len(last.segments):
            return None
        touched = []
        for index, (path, identity) in enumerate(files.segments):
            if index < len(last.segments):
                old_path, old = last.segments[index]
                if old_path != path or old.inode != identity.inode or identity.size < old.size:
                    return None
                if old == identity:
                    continue
            touched.append(index)
        return touched

    def _append(self, files: tables.MetricFiles, touched: list[int]) -> tuple | None:
        """Return the table with the new rows of the touched segments appended, or
        None if it needs a rebuild.
        """
        parquet = files.parquet_identity
        if parquet is not None and any(files.segments[i][1].mtime_ns <= parquet.mtime_ns for i in touched):
            return None  # The parquet file is newer: it replaces the segments.
        new_tables = []
        counts = {}
        for index in touched:
            path = files.segments[index][0]
            reader = self._reader(path)
            reader.read()
            batches = reader.batches
            known = self._used.get(path, 0)
            if len(batches) < known:
                return None  # The segment was replaced since the table was built.
            if len(batches) > known:
                new_tables.append(self._normalize(path, pa.Table.from_batches(batches[known:])))
            counts[path] = len(batches)
        used = self._used
        if not new_tables:
            used.update(counts)
            return self._table, self._max_steps, used
        new_rows = tables.concat(new_tables)
        max_steps = dict(self._max_steps)
        merge = None  # The index of the first row of the table that the new rows merge with.
        for key, (low, high, count, distinct) in tables.step_ranges(new_rows, self.group).items():
            if low is None:
                continue  # Rows without a step are never merged.
            last = max_steps.get(key)
            if self.group is not None and (count != distinct or (last is not None and low <= last)):
                return None
            if last is not None and low < last:
                return None  # Only a rebuild finds the row of a step before the last one.
            if last is not None and low == last:
                if not self._ends_with_segment_step(last):
                    return None
                merge = self._table.num_rows - 1
            elif count != distinct:
                merge = self._table.num_rows
            max_steps[key] = max(high, last) if last is not None else high
        head = self._table
        if merge is not None:
            # A step logged again is usually the last one, by a second log_vector
            # call for it, so only the last row and the new rows are merged.
            merged, targets = tables.merge_steps_noting(tables.concat([head.slice(merge), new_rows]))
            head, new_rows = head.slice(0, merge), merged
            self._merged_into = np.concatenate([self._merged_into, targets + merge])
            if merge < self._table.num_rows:
                # A row of the table changed: readers that keep something per row must start again.
                self.generation = next(_GENERATIONS)
        table = tables.concat([head, new_rows])
        self._nbytes += new_rows.nbytes
        self._tail_chunks += new_rows.column(0).num_chunks if new_rows.num_columns else 0
        if self._tail_chunks > MAX_CHUNKS:
            # Combine the chunks appended since the last time into one. Once the
            # table contains MAX_CHUNKS such chunks, combine the whole table. So an
            # append touches a bounded number of chunks, and each row is copied twice.
            if self._head_chunks >= MAX_CHUNKS:
                table = table.combine_chunks()
                self._head_chunks = 1
            else:
                head = table.slice(0, self._settled_rows)
                table = pa.concat_tables([head, table.slice(self._settled_rows).combine_chunks()])
                self._head_chunks += 1
            self._settled_rows, self._tail_chunks = table.num_rows, 0
        used.update(counts)
        return table, max_steps, used

    def _ends_with_segment_step(self, step: int) -> bool:
        """Return whether the table's last row has ``step`` and comes from a segment, not the parquet file."""
        assert self._table is not None
        rows = self._table.num_rows
        return rows > self._parquet_rows and self._table.column(tables.STEP)[rows - 1].as_py() == step

    def _rebuild(self, files: tables.MetricFiles) -> tuple:
        parquet = None
        parquet_identity = files.parquet_identity
        if files.parquet is not None and parquet_identity is not None:
            try:
                # While the file is torn, its last good copy is served: segments are
                # compared with that copy's time, not with the torn file's.
                parquet, parquet_identity = self._cache.load_version(files.parquet, self._read_parquet, "parquet")
            except FileNotFoundError:
                parquet_identity = None
            except UnreadableFile:
                if not files.segments:
                    raise
                # A parquet file still being written at close: the segments hold its rows.
                parquet_identity = None
        used = {}
        groups: list[tuple[tuple, list[tuple[str, Identity, pa.Table]]]] = []
        for path, ident in files.segments:
            reader = self._reader(path)
            table, _ = reader.read()
            used[path] = len(reader.batches)
            if not table.num_columns:
                continue
            # Consecutive segments of one schema, on one side of the parquet file's
            # time, are normalized together: a live run has thousands of them.
            # The logger orders the columns differently from one segment to the next.
            after = parquet_identity is not None and ident.mtime_ns > parquet_identity.mtime_ns
            fields = (frozenset(zip(table.column_names, table.schema.types)), after)
            if len(fields[0]) < table.num_columns:
                fields = (object(), after)  # Two columns of one name: normalized alone.
            if groups and groups[-1][0] == fields:
                groups[-1][1].append((path, ident, table.select(groups[-1][1][0][2].column_names)))
            else:
                groups.append((fields, [(path, ident, table)]))
        segment_tables = []
        for _, group in groups:
            path, ident, _ = group[-1]
            table = pa.concat_tables([table for _, _, table in group]) if len(group) > 1 else group[0][2]
            segment_tables.append((ident, self._normalize(path, table)))
        table, self._merged_into = tables.combine(parquet, parquet_identity, segment_tables, self.group)
        self._parquet_rows = parquet.num_rows if parquet is not None and parquet_identity is not None else 0
        if table.num_columns and table.column(0).num_chunks > 1:
            table = table.combine_chunks()
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
            reader = self._readers[path] = tables.SegmentReader(path, self.fs)
        return reader

    def _read_parquet(self, path: str) -> pa.Table:
        return tables.read_parquet(path, self.fs)
