"""RunTable reads given the changed file names stat only those files.

Anything unexpected falls back to a full scan, so no row is lost or repeated."""

from __future__ import annotations

import os
import time

import pyarrow as pa

from expman_tornado.store import tables
from expman_tornado.store.files import FileCache
from expman_tornado.store.runtable import MAX_CHUNKS, RunTable

from .stores import metric_table, set_mtime, stream_bytes, write_parquet, write_segment


def segment(folder: str, number: int) -> str:
    return os.path.join(folder, "vectors-%04d.arrow" % number)


def rows(first: int, count: int) -> pa.Table:
    steps = list(range(first, first + count))
    return metric_table(steps, loss=[float(step) for step in steps])


def steps_of(table: pa.Table) -> list[int]:
    return table.column("step").to_pylist()


def new_table(tmp_path) -> tuple[str, RunTable]:
    folder = str(tmp_path / "run")
    os.makedirs(folder)
    return folder, RunTable(folder, "vectors", FileCache(), str(tmp_path))


def append_bytes(path: str, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)


def test_read_named_new_segments(tmp_path):
    folder, table = new_table(tmp_path)
    write_segment(segment(folder, 0), rows(0, 10))
    assert steps_of(table.read()) == list(range(10))

    write_segment(segment(folder, 1), rows(10, 5))
    write_segment(segment(folder, 2), rows(15, 5))
    read = table.read(changed={"vectors-0001.arrow", "vectors-0002.arrow", "run.yaml"})
    assert steps_of(read) == list(range(20))


def test_read_newest_segment_growth_unnamed(tmp_path):
    folder, table = new_table(tmp_path)
    data, _ = stream_bytes(rows(0, 10), rows(10, 10))
    path = segment(folder, 0)
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
    first = table.read()
    append_bytes(path, data[len(data) // 2:])
    assert steps_of(table.read(changed={"run.yaml"})) == list(range(20))
    assert first.num_rows < 20


def test_read_named_changes_skips_older_segments(tmp_path, monkeypatch):
    folder, table = new_table(tmp_path)
    for number in range(50):
        write_segment(segment(folder, number), rows(number * 2, 2))
    table.read()
    write_segment(segment(folder, 50), rows(100, 2))

    looked_at = []
    real_lstat = os.lstat
    monkeypatch.setattr(os, "lstat", lambda path, *a, **k: looked_at.append(str(path)) or real_lstat(path, *a, **k))
    assert steps_of(table.read(changed={"vectors-0050.arrow"})) == list(range(102))
    segments = [path for path in looked_at if path.endswith(".arrow")]
    assert sorted(os.path.basename(path) for path in segments) == ["vectors-0049.arrow", "vectors-0050.arrow"]


def test_read_replaced_segment_rescans(tmp_path):
    folder, table = new_table(tmp_path)
    write_segment(segment(folder, 0), rows(0, 5))
    write_segment(segment(folder, 1), rows(5, 5))
    table.read()
    os.remove(segment(folder, 0))
    write_segment(segment(folder, 0), metric_table([0, 1, 2], loss=[9.0] * 3))
    read = table.read(changed={"vectors-0000.arrow"})
    assert steps_of(read) == [0, 1, 2, 5, 6, 7, 8, 9]
    assert read.column("loss").to_pylist()[:3] == [9.0] * 3


def test_read_deleted_segment_rescans(tmp_path):
    folder, table = new_table(tmp_path)
    write_segment(segment(folder, 0), rows(0, 5))
    write_segment(segment(folder, 1), rows(5, 5))
    table.read()
    os.remove(segment(folder, 1))
    assert steps_of(table.read(changed={"vectors-0001.arrow"})) == list(range(5))


def test_read_lower_numbered_segment_rescans(tmp_path):
    folder, table = new_table(tmp_path)
    write_segment(segment(folder, 0), rows(0, 5))
    write_segment(segment(folder, 2), rows(10, 5))
    table.read()
    write_segment(segment(folder, 1), rows(5, 5))
    assert steps_of(table.read(changed={"vectors-0001.arrow"})) == list(range(15))


def test_read_close_parquet_replaces_segments(tmp_path):
    folder, table = new_table(tmp_path)
    write_segment(segment(folder, 0), rows(0, 5))
    write_segment(segment(folder, 1), rows(5, 5))
    set_mtime(segment(folder, 0), time.time() - 10)
    set_mtime(segment(folder, 1), time.time() - 10)
    table.read()
    write_parquet(os.path.join(folder, "vectors.parquet"), rows(0, 10))
    assert steps_of(table.read(changed={"vectors.parquet"})) == list(range(10))
    for number in (0, 1):
        os.remove(segment(folder, number))
    assert steps_of(table.read(changed={"vectors-0000.arrow", "vectors-0001.arrow"})) == list(range(10))


def test_read_many_appends_bounded_chunks(tmp_path):
    folder, table = new_table(tmp_path)
    write_segment(segment(folder, 0), rows(0, 1))
    table.read()
    appends = MAX_CHUNKS * 3 + 7
    for number in range(1, appends + 1):
        write_segment(segment(folder, number), rows(number, 1))
        read = table.read(changed={"vectors-%04d.arrow" % number})
    assert steps_of(read) == list(range(appends + 1))
    assert read.column(0).num_chunks <= 2 * MAX_CHUNKS + 1
    assert table.nbytes >= read.column("loss").nbytes


def test_read_during_close_keeps_every_row(tmp_path, monkeypatch):
    """The writer closes the run while the folder is being scanned: it writes the
    parquet file, then deletes the segments. The read must still hold every row."""
    folder, table = new_table(tmp_path)
    for number in range(4):
        write_segment(segment(folder, number), rows(number * 5, 5))
        set_mtime(segment(folder, number), time.time() - 10)
    assert steps_of(table.read()) == list(range(20))

    real_identity = tables._regular_identity
    closed = []

    def close_then_stat(entry, inside):
        if not closed:
            closed.append(True)
            write_parquet(os.path.join(folder, "vectors.parquet"), rows(0, 20))
            for number in range(4):
                os.remove(segment(folder, number))
        return real_identity(entry, inside)

    monkeypatch.setattr(tables, "_regular_identity", close_then_stat)
    assert steps_of(table.read()) == list(range(20))


def test_read_segments_in_any_column_order(tmp_path):
    folder, table = new_table(tmp_path)
    write_segment(segment(folder, 0), metric_table([0, 1], loss=[1.0, 2.0], acc=[0.1, 0.2]))
    write_segment(segment(folder, 1), metric_table([2], acc=[0.3], loss=[3.0]).select(["acc", "step", "timestamp", "loss"]))
    write_segment(segment(folder, 2), metric_table([3], loss=[4.0], acc=[0.4], lr=[0.01]))
    read = table.read()
    assert steps_of(read) == [0, 1, 2, 3]
    assert read.column("loss").to_pylist() == [1.0, 2.0, 3.0, 4.0]
    assert read.column("acc").to_pylist() == [0.1, 0.2, 0.3, 0.4]
    assert read.column("lr").to_pylist() == [None, None, None, 0.01]


def test_merged_rows_noted_in_order(tmp_path):
    """Each segment row merged into an earlier one names that row, in the order they were written."""
    folder, table = new_table(tmp_path)
    write_segment(segment(folder, 0), metric_table([0, 1, 2], loss=[1.0, 2.0, 3.0]))
    assert len(table.read_rows().merged_into) == 0

    write_segment(segment(folder, 1), metric_table([2, 3, 1], acc=[0.2, 0.3, 0.1]))
    read = table.read_rows()
    assert steps_of(read.table) == [0, 1, 2, 3]
    assert read.table.column("acc").to_pylist() == [None, 0.1, 0.2, 0.3]
    assert read.merged_into.tolist() == [2, 1]

    # Rows without a step never merge, and do not shift the rows noted after them.
    write_segment(segment(folder, 2), metric_table([None, 3], loss=[9.0, 4.0]))
    assert table.read_rows().merged_into.tolist() == [2, 1, 3]


def test_merged_rows_counted_after_parquet(tmp_path):
    """Rows of segments newer than the parquet file are noted by their index in the whole table."""
    folder, table = new_table(tmp_path)
    write_parquet(os.path.join(folder, "vectors.parquet"), rows(0, 5))
    set_mtime(os.path.join(folder, "vectors.parquet"), time.time() - 60)
    write_segment(segment(folder, 0), metric_table([5, 6, 5], loss=[5.0, 6.0, None], acc=[None, None, 0.5]))
    read = table.read_rows()
    assert steps_of(read.table) == [0, 1, 2, 3, 4, 5, 6]
    assert read.merged_into.tolist() == [5]


def as_rows(table: pa.Table) -> list[dict]:
    return table.select(sorted(table.column_names)).to_pylist()


def test_merge_appended_matches_rebuild(tmp_path):
    """Merging new rows with the last row alone gives the table and merges that a rebuild gives."""
    folder, table = new_table(tmp_path)
    written = [
        metric_table([0, 1, 2], loss=[1.0, 0.5, 0.3]),
        metric_table([2], acc=[0.2]),  # The last step again.
        metric_table([3, 3, 4], loss=[0.25, None, 0.2], acc=[None, 0.3, None]),  # Twice within the new rows.
        metric_table([4, 5], val=[0.4, 0.5]),
        metric_table(pa.array([None, 6], pa.int64()), loss=[9.0, 0.1]),
        metric_table([6], val=[0.6]),
        metric_table([1], val=[0.1]),  # A step before the last one: a rebuild.
    ]
    for number, rows_written in enumerate(written):
        generation = table.generation
        write_segment(segment(folder, number), rows_written)
        read = table.read_rows(changed={os.path.basename(segment(folder, number))})
        fresh = RunTable(folder, "vectors", FileCache(), str(tmp_path)).read_rows()
        assert as_rows(read.table) == as_rows(fresh.table), "after segment %d" % number
        assert read.merged_into.tolist() == fresh.merged_into.tolist(), "after segment %d" % number
        if number in (2, 4):
            # Appended without a rebuild: the rows read before are unchanged.
            assert table.generation == generation
        else:
            # A rebuild, or the last row changed: readers that keep something per row start again.
            assert table.generation != generation
    assert steps_of(read.table) == [0, 1, 2, 3, 4, 5, None, 6]
    assert read.merged_into.tolist() == [2, 3, 4, 7, 1]
