"""Odd stores, built by hand: damaged files, other writers' types, odd names, hostile input.

Every test writes its own small store into ``tmp_path`` and then requests the
API routes that read it. The inputs are failures that users of experiment
dashboards have reported: NaN in JSON, torn files, traversal, odd names.
"""

from __future__ import annotations

import decimal
import json
import logging
import math
import os
import threading
import time
from datetime import date, datetime, timezone
from urllib.parse import quote

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from expman_tornado.store.files import FileCache, ParseError, UnreadableFile

from .conftest import assert_api_error, strict_json
from .stores import (
    T0,
    make_run,
    metric_table,
    parquet_bytes,
    set_mtime,
    stream_bytes,
    write_parquet,
    write_segment,
    write_text,
    write_yaml,
)

NAN, INF = float("nan"), float("inf")


@pytest.fixture
def store_root(tmp_path) -> str:
    """An empty store that each test fills before its first request."""
    root = tmp_path / "store"
    root.mkdir()
    return str(root)


def run_url(experiment: str, run: str, *rest: str) -> str:
    """Return the API path of a run, each name percent-encoded as one segment."""
    path = "/api/experiments/%s/runs/%s" % (quote(experiment, safe=""), quote(run, safe=""))
    return "/".join([path, *rest])


async def fetch(http_client, base_url, path, **kwargs):
    return await http_client.fetch(base_url + path, raise_error=False, **kwargs)


async def fetch_json(http_client, base_url, path):
    response = await fetch(http_client, base_url, path)
    assert response.code == 200, response.body[:300]
    return strict_json(response.body)


async def runs_by_id(http_client, base_url, experiment="e") -> dict:
    runs = await fetch_json(http_client, base_url, "/api/experiments/%s/runs" % quote(experiment, safe=""))
    return {run["id"]: run for run in runs}


def now_iso(offset_seconds: float = 0.0) -> str:
    moment = datetime.fromtimestamp(time.time() + offset_seconds, timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def age_files(folder: str, seconds_ago: float) -> None:
    """Set the mtime of every file in a run folder to ``seconds_ago`` in the past."""
    moment = time.time() - seconds_ago
    for name in os.listdir(folder):
        set_mtime(os.path.join(folder, name), moment)


# Damaged parquet files


def damaged_parquet(damage: str) -> bytes:
    """Return a two-row parquet file cut to half its size, or no bytes at all."""
    data = parquet_bytes(metric_table([0, 1], loss=[1.0, 0.5]))
    if damage == "truncated":
        return data[: len(data) // 2]
    return b""


@pytest.mark.gen_test
@pytest.mark.parametrize("damage", ["truncated", "zero_bytes"])
async def test_damaged_parquet_finished_is_422(http_client, base_url, store_root, damage):
    folder = make_run(store_root, "e", "r", "FINISHED")
    path = os.path.join(folder, "vectors.parquet")
    write_text(path, damaged_parquet(damage))
    set_mtime(path, time.time() - 60)
    response = await fetch(http_client, base_url, run_url("e", "r", "metrics"))
    assert_api_error(response, 422, mentions="vectors.parquet")


@pytest.mark.gen_test
@pytest.mark.parametrize("damage", ["truncated", "zero_bytes"])
async def test_damaged_parquet_running_is_503(http_client, base_url, store_root, damage):
    folder = make_run(store_root, "e", "r", "RUNNING", heartbeat_at=now_iso())
    path = os.path.join(folder, "vectors.parquet")
    write_text(path, damaged_parquet(damage))
    response = await fetch(http_client, base_url, run_url("e", "r", "metrics"))
    assert_api_error(response, 503)
    assert int(response.headers["Retry-After"]) > 0


@pytest.mark.gen_test
async def test_damaged_parquet_run_still_listed(http_client, base_url, store_root):
    folder = make_run(store_root, "e", "r", "FINISHED")
    write_text(os.path.join(folder, "vectors.parquet"), b"PAR1 not a parquet file")
    runs = await runs_by_id(http_client, base_url)
    assert runs["r"]["status"] == "FINISHED"
    assert runs["r"]["metrics"] == {}
    details = await fetch_json(http_client, base_url, run_url("e", "r"))
    assert details["id"] == "r"


@pytest.mark.gen_test
async def test_torn_parquet_serves_last_good_rows(http_client, base_url, store_root):
    folder = make_run(store_root, "e", "r", "RUNNING", heartbeat_at=now_iso())
    path = os.path.join(folder, "vectors.parquet")
    write_parquet(path, metric_table(list(range(50)), loss=[1 / (s + 1) for s in range(50)]))
    good = await fetch_json(http_client, base_url, run_url("e", "r", "metrics"))
    assert len(good) == 50

    rewritten = parquet_bytes(metric_table(list(range(80)), loss=[1 / (s + 1) for s in range(80)]))
    for torn in (rewritten[: len(rewritten) * 6 // 10], b""):
        write_text(path, torn)
        assert await fetch_json(http_client, base_url, run_url("e", "r", "metrics")) == good
        runs = await runs_by_id(http_client, base_url)
        assert runs["r"]["metrics"]["loss"] == 1 / 50
        details = await fetch_json(http_client, base_url, run_url("e", "r"))
        assert details["rows"] == 50

    write_text(path, rewritten)
    assert len(await fetch_json(http_client, base_url, run_url("e", "r", "metrics"))) == 80


@pytest.mark.gen_test
async def test_torn_parquet_keeps_newer_segments(http_client, base_url, store_root):
    """A resumed run whose parquet is being rewritten keeps the rows of its new segments."""
    folder = make_run(store_root, "e", "r", "RUNNING", heartbeat_at=now_iso())
    path = os.path.join(folder, "vectors.parquet")
    write_parquet(path, metric_table(list(range(10)), loss=[float(s) for s in range(10)]))
    set_mtime(path, time.time() - 100)
    segment = os.path.join(folder, "vectors-0000.arrow")
    write_segment(segment, metric_table([10, 11, 12], loss=[10.0, 11.0, 12.0]))
    set_mtime(segment, time.time() - 50)
    before = await fetch_json(http_client, base_url, run_url("e", "r", "metrics"))
    assert [row["step"] for row in before] == list(range(13))

    rewritten = parquet_bytes(metric_table(list(range(13)), loss=[float(s) for s in range(13)]))
    write_text(path, rewritten[: len(rewritten) // 2])
    during = await fetch_json(http_client, base_url, run_url("e", "r", "metrics"))
    assert during == before


# Values and types that parquet files of other writers hold


@pytest.mark.gen_test
async def test_nan_and_inf_are_null(http_client, base_url, store_root):
    folder = make_run(store_root, "e", "r")
    write_parquet(os.path.join(folder, "vectors.parquet"),
                  metric_table([0, 1, 2, 3, 4], loss=[1.0, NAN, INF, 0.5, -INF], acc=[NAN] * 5))
    rows = await fetch_json(http_client, base_url, run_url("e", "r", "metrics"))
    assert [row["loss"] for row in rows] == [1.0, None, None, 0.5, None]
    assert [row["acc"] for row in rows] == [None] * 5
    columns = await fetch_json(http_client, base_url, run_url("e", "r", "metrics?format=columnar"))
    assert columns["loss"] == [1.0, None, None, 0.5, None]
    runs = await runs_by_id(http_client, base_url)
    assert runs["r"]["metrics"] == {"loss": None, "acc": None}


@pytest.mark.gen_test
async def test_arrow_keeps_nan_and_inf(http_client, base_url, store_root):
    folder = make_run(store_root, "e", "r")
    write_parquet(os.path.join(folder, "vectors.parquet"),
                  metric_table([0, 1, 2, 3], loss=[NAN, INF, -INF, 1.0]))
    response = await fetch(http_client, base_url, run_url("e", "r", "metrics?format=arrow"))
    loss = pa.ipc.open_stream(response.body).read_all().column("loss").to_pylist()
    assert math.isnan(loss[0])
    assert loss[1:] == [INF, -INF, 1.0]


@pytest.mark.gen_test
async def test_max_points_keeps_non_finite(http_client, base_url, store_root):
    steps = list(range(1000))
    loss = [1 / (s + 1) for s in steps]
    loss[500] = NAN
    loss[700] = INF
    folder = make_run(store_root, "e", "r")
    write_parquet(os.path.join(folder, "vectors.parquet"), metric_table(steps, loss=loss))
    rows = await fetch_json(http_client, base_url, run_url("e", "r", "metrics?max_points=40"))
    assert len(rows) <= 40
    response = await fetch(http_client, base_url, run_url("e", "r", "metrics?max_points=40&format=arrow"))
    table = pa.ipc.open_stream(response.body).read_all()
    kept = dict(zip(table.column("step").to_pylist(), table.column("loss").to_pylist()))
    assert math.isnan(kept[500])
    assert kept[700] == INF


@pytest.mark.gen_test
async def test_string_metric_column(http_client, base_url, store_root):
    phases = ["warmup", None, "train", "train", "eval"] * 20
    folder = make_run(store_root, "e", "r")
    write_parquet(os.path.join(folder, "vectors.parquet"),
                  metric_table(list(range(100)), phase=phases, loss=[float(s) for s in range(100)]))
    rows = await fetch_json(http_client, base_url, run_url("e", "r", "metrics"))
    assert [row["phase"] for row in rows] == phases
    sampled = await fetch_json(http_client, base_url, run_url("e", "r", "metrics?max_points=10"))
    assert sum(row["phase"] is not None for row in sampled) <= 10
    runs = await runs_by_id(http_client, base_url)
    assert runs["r"]["metrics"]["phase"] == "eval"


BIG = [2**53 + 1, -(2**63), 2**63 - 1]


@pytest.mark.gen_test
async def test_int64_past_2_53_exact(http_client, base_url, store_root):
    folder = make_run(store_root, "e", "r")
    write_parquet(os.path.join(folder, "vectors.parquet"),
                  metric_table([0, 1, 2], tokens=pa.array(BIG, pa.int64())))
    rows = json.loads((await fetch(http_client, base_url, run_url("e", "r", "metrics"))).body)
    assert [row["tokens"] for row in rows] == BIG
    columns = json.loads((await fetch(http_client, base_url, run_url("e", "r", "metrics?format=columnar"))).body)
    assert columns["tokens"] == BIG
    csv = (await fetch(http_client, base_url, run_url("e", "r", "metrics?format=csv"))).body.decode()
    assert str(2**53 + 1) in csv
    runs = json.loads((await fetch(http_client, base_url, "/api/experiments/e/runs")).body)
    assert runs[0]["metrics"]["tokens"] == 2**63 - 1


@pytest.mark.gen_test
async def test_float32_column_values(http_client, base_url, store_root):
    values = [0.1, 0.25, 3.0e38]
    folder = make_run(store_root, "e", "r")
    write_parquet(os.path.join(folder, "vectors.parquet"),
                  metric_table([0, 1, 2], lr=pa.array(values, pa.float32())))
    rows = await fetch_json(http_client, base_url, run_url("e", "r", "metrics"))
    assert [np.float32(row["lr"]) for row in rows] == [np.float32(v) for v in values]
    runs = await runs_by_id(http_client, base_url)
    assert runs["r"]["metrics"]["lr"] == rows[-1]["lr"]


@pytest.mark.gen_test
async def test_dictionary_string_column(http_client, base_url, store_root):
    phases = ["train", "eval", None, "train"]
    folder = make_run(store_root, "e", "r")
    write_parquet(os.path.join(folder, "vectors.parquet"),
                  metric_table([0, 1, 2, 3], phase=pa.array(phases).dictionary_encode()))
    rows = await fetch_json(http_client, base_url, run_url("e", "r", "metrics"))
    assert [row["phase"] for row in rows] == phases
    details = await fetch_json(http_client, base_url, run_url("e", "r"))
    assert {c["name"]: c["type"] for c in details["columns"]}["phase"] == "string"


@pytest.mark.gen_test
async def test_column_starting_mid_run(http_client, base_url, store_root):
    steps = list(range(200))
    val_acc = [{0: 0.5, 50: 0.6, 100: 0.7, 150: 0.8}.get(s) for s in steps]
    warm = [None if s < 100 else 0.001 * (s - 99) for s in steps]
    folder = make_run(store_root, "e", "r")
    write_parquet(os.path.join(folder, "vectors.parquet"),
                  metric_table(steps, loss=[1.0] * 200, val_acc=val_acc, lr_warm=warm))
    rows = await fetch_json(http_client, base_url, run_url("e", "r", "metrics"))
    assert [row["lr_warm"] for row in rows[:100]] == [None] * 100
    assert rows[100]["lr_warm"] == pytest.approx(0.001)
    sparse = await fetch_json(http_client, base_url, run_url("e", "r", "metrics?columns=val_acc&max_points=20"))
    kept = {row["step"]: row["val_acc"] for row in sparse if row["val_acc"] is not None}
    assert kept == {0: 0.5, 50: 0.6, 100: 0.7, 150: 0.8}
    runs = await runs_by_id(http_client, base_url)
    assert runs["r"]["metrics"]["val_acc"] == 0.8
    assert runs["r"]["metrics"]["lr_warm"] == pytest.approx(0.1)


@pytest.mark.gen_test
async def test_parquet_duplicate_steps_kept(http_client, base_url, store_root):
    """A resumed run repeats steps 40-59, and the parquet is served as written."""
    steps = list(range(60)) + list(range(40, 100))
    loss = [2.0 - 0.01 * s for s in range(60)] + [1.5 - 0.01 * s for s in range(40, 100)]
    folder = make_run(store_root, "e", "r")
    write_parquet(os.path.join(folder, "vectors.parquet"), metric_table(steps, loss=loss))
    rows = await fetch_json(http_client, base_url, run_url("e", "r", "metrics"))
    assert [row["step"] for row in rows] == steps
    after_50 = await fetch_json(http_client, base_url, run_url("e", "r", "metrics?since_step=50"))
    assert len(after_50) == 58
    sampled = await fetch_json(http_client, base_url, run_url("e", "r", "metrics?max_points=10"))
    assert max(row["loss"] for row in sampled) == 2.0
    assert min(row["loss"] for row in sampled) == pytest.approx(0.51)
    runs = await runs_by_id(http_client, base_url)
    assert runs["r"]["metrics"]["loss"] == pytest.approx(0.51)


@pytest.mark.gen_test
async def test_parquet_null_step_kept(http_client, base_url, store_root):
    folder = make_run(store_root, "e", "r")
    write_parquet(os.path.join(folder, "vectors.parquet"),
                  metric_table([0, 1, None, 3], loss=[1.0, 0.5, 0.25, 0.125]))
    rows = await fetch_json(http_client, base_url, run_url("e", "r", "metrics"))
    assert [row["step"] for row in rows] == [0, 1, None, 3]
    assert rows[2]["loss"] == 0.25
    after_0 = await fetch_json(http_client, base_url, run_url("e", "r", "metrics?since_step=0"))
    assert [row["step"] for row in after_0] == [1, 3]


@pytest.mark.gen_test
async def test_segment_null_step_not_merged(http_client, base_url, store_root):
    """Rows without a step stay apart, also from rows with a negative step."""
    folder = make_run(store_root, "e", "r", "RUNNING", heartbeat_at=now_iso())
    write_segment(os.path.join(folder, "vectors-0000.arrow"),
                  metric_table([None, -1, 0, 0, None], loss=[5.0, 1.0, 2.0, None, 6.0]))
    rows = await fetch_json(http_client, base_url, run_url("e", "r", "metrics"))
    assert [(row["step"], row["loss"]) for row in rows] == [(None, 5.0), (-1, 1.0), (0, 2.0), (None, 6.0)]


@pytest.mark.gen_test
@pytest.mark.parametrize(
    "timestamps",
    [
        pytest.param(pa.timestamp("us"), id="naive"),
        pytest.param(pa.timestamp("ms", tz="UTC"), id="milliseconds"),
        pytest.param(pa.timestamp("ns", tz="Europe/Berlin"), id="berlin"),
        pytest.param(pa.timestamp("s", tz="-05:00"), id="offset"),
    ],
)
async def test_timestamps_served_as_utc(http_client, base_url, store_root, timestamps):
    instants = pa.array([T0.replace(second=i) for i in range(3)], pa.timestamp("us", tz="UTC"))
    if timestamps.tz is None:
        column = instants.cast(pa.timestamp("us")).cast(timestamps)
    else:
        column = instants.cast(timestamps)
    folder = make_run(store_root, "e", "r")
    write_parquet(os.path.join(folder, "vectors.parquet"), metric_table([0, 1, 2], timestamps=column, loss=[1.0] * 3))
    rows = await fetch_json(http_client, base_url, run_url("e", "r", "metrics"))
    expected = ["2026-01-05T09:00:0%d.000000Z" % i for i in range(3)]
    assert [row["timestamp"] for row in rows] == expected
    columns = await fetch_json(http_client, base_url, run_url("e", "r", "metrics?format=columnar"))
    assert columns["timestamp"] == expected


@pytest.mark.gen_test
@pytest.mark.parametrize("fmt", ["json", "columnar", "csv"])
async def test_timestamps_out_of_range_served_as_null(http_client, base_url, store_root, fmt):
    # Values a damaged file can hold: the int64 extremes and the years after 9999.
    micros = pa.array([2**63 - 1, -(2**63) + 1, 300_000_000_000_000_000, 0], pa.int64())
    column = micros.cast(pa.timestamp("us", tz="UTC"))
    folder = make_run(store_root, "e", "r")
    write_parquet(os.path.join(folder, "vectors.parquet"), metric_table([0, 1, 2, 3], timestamps=column, loss=[1.0] * 4))
    response = await http_client.fetch(base_url + run_url("e", "r", "metrics?format=" + fmt), raise_error=False)
    assert response.code == 200
    if fmt == "csv":
        lines = response.body.decode().splitlines()
        assert [line.split(",")[1] for line in lines[1:]] == ["", "", "", "1970-01-01T00:00:00.000000Z"]
        return
    body = strict_json(response.body)
    timestamps = body["timestamp"] if fmt == "columnar" else [row["timestamp"] for row in body]
    assert timestamps == [None, None, None, "1970-01-01T00:00:00.000000Z"]


@pytest.mark.gen_test
async def test_polars_panic_is_json_422(http_client, base_url, app, monkeypatch):
    from polars.exceptions import PanicException

    def panic(*args, **kwargs):
        raise PanicException("invalid or out-of-range datetime")

    monkeypatch.setattr(app.settings["expman"].store, "metrics_version", panic)
    response = await http_client.fetch(base_url + run_url("vision", "baseline", "metrics"), raise_error=False)
    assert_api_error(response, 422, mentions="cannot be read or encoded")


@pytest.mark.gen_test
async def test_segment_naive_timestamps_as_utc(http_client, base_url, store_root):
    folder = make_run(store_root, "e", "r", "RUNNING", heartbeat_at=now_iso())
    naive = pa.array([T0.replace(tzinfo=None)], pa.timestamp("us"))
    write_segment(os.path.join(folder, "vectors-0000.arrow"), metric_table([0], timestamps=naive, loss=[1.0]))
    rows = await fetch_json(http_client, base_url, run_url("e", "r", "metrics"))
    assert rows[0]["timestamp"] == "2026-01-05T09:00:00.000000Z"


@pytest.mark.gen_test
async def test_older_metrics_parquet_name(http_client, base_url, store_root):
    folder = make_run(store_root, "e", "r")
    write_parquet(os.path.join(folder, "metrics.parquet"), metric_table([0, 1], loss=[1.0, 0.5]))
    rows = await fetch_json(http_client, base_url, run_url("e", "r", "metrics"))
    assert [row["loss"] for row in rows] == [1.0, 0.5]
    runs = await runs_by_id(http_client, base_url)
    assert runs["r"]["metrics"] == {"loss": 0.5}


@pytest.mark.gen_test
async def test_empty_parquet_keeps_columns(http_client, base_url, store_root):
    """A parquet with a schema and no rows (or no row group) returns [] with its columns."""
    empty = metric_table([], loss=pa.array([], pa.float64()), acc=pa.array([], pa.float64()))
    write_parquet(os.path.join(make_run(store_root, "e", "zero-rows", "RUNNING", heartbeat_at=now_iso()),
                               "vectors.parquet"), empty)
    pq.ParquetWriter(os.path.join(make_run(store_root, "e", "zero-row-groups"), "vectors.parquet"),
                     empty.schema).close()
    for run in ("zero-rows", "zero-row-groups"):
        assert await fetch_json(http_client, base_url, run_url("e", run, "metrics")) == []
        sliced = await fetch_json(http_client, base_url, run_url("e", run, "metrics?max_points=10&since_step=5"))
        assert sliced == []
        columns = await fetch_json(http_client, base_url, run_url("e", run, "metrics?format=columnar"))
        assert columns == {"step": [], "timestamp": [], "loss": [], "acc": []}
        response = await fetch(http_client, base_url, run_url("e", run, "metrics?format=arrow"))
        table = pa.ipc.open_stream(response.body).read_all()
        assert table.num_rows == 0
        assert table.column_names == ["step", "timestamp", "loss", "acc"]


@pytest.mark.gen_test
async def test_run_without_metric_files(http_client, base_url, store_root):
    make_run(store_root, "e", "r")
    assert await fetch_json(http_client, base_url, run_url("e", "r", "metrics")) == []
    columns = await fetch_json(http_client, base_url, run_url("e", "r", "metrics?format=columnar"))
    assert columns == {"step": [], "timestamp": []}
    csv = await fetch(http_client, base_url, run_url("e", "r", "metrics?format=csv"))
    assert len(csv.body.decode().splitlines()) <= 1


@pytest.mark.gen_test
async def test_steps_only_parquet(http_client, base_url, store_root):
    folder = make_run(store_root, "e", "r")
    write_parquet(os.path.join(folder, "vectors.parquet"), metric_table([0, 1, 2]))
    rows = await fetch_json(http_client, base_url, run_url("e", "r", "metrics"))
    assert [set(row) for row in rows] == [{"step", "timestamp"}] * 3


@pytest.mark.gen_test
@pytest.mark.parametrize(
    "step",
    [
        pytest.param(pa.array(["0", "one"]), id="text"),
        pytest.param(pa.array([0.0, 1.5]), id="fractional"),
        pytest.param(pa.array([0, 2**64 - 1], pa.uint64()), id="past_int64"),
    ],
)
async def test_unusable_step_column_is_422(http_client, base_url, store_root, step):
    folder = make_run(store_root, "e", "r")
    write_parquet(os.path.join(folder, "vectors.parquet"), pa.table({"step": step, "loss": [1.0, 0.5]}))
    response = await fetch(http_client, base_url, run_url("e", "r", "metrics"))
    assert_api_error(response, 422, mentions="step")
    runs = await runs_by_id(http_client, base_url)
    assert runs["r"]["metrics"] == {}


UNUSUAL_COLUMNS = {
    "binary": pa.array([b"\x00\xff", None]),
    "decimal": pa.array([decimal.Decimal("1.25"), None]),
    "duration": pa.array([1500, None], pa.duration("ms")),
    "list": pa.array([[1.0, 2.0], None]),
    "struct": pa.array([{"a": 1}, None]),
    "float16": pa.array([1.5, None], pa.float32()).cast(pa.float16()),
    "date": pa.array([date(2026, 1, 5), None]),
    "boolean": pa.array([True, None]),
    "large_string": pa.array(["x", None], pa.large_string()),
}


@pytest.mark.gen_test
@pytest.mark.parametrize("kind", list(UNUSUAL_COLUMNS))
async def test_unusual_column_type_served(http_client, base_url, store_root, kind):
    folder = make_run(store_root, "e", "r")
    write_parquet(os.path.join(folder, "vectors.parquet"), metric_table([0, 1], value=UNUSUAL_COLUMNS[kind]))
    for fmt in ("json", "columnar", "csv", "arrow", "parquet"):
        response = await fetch(http_client, base_url, run_url("e", "r", "metrics?format=" + fmt))
        assert response.code == 200, (fmt, response.body[:300])
    runs = await runs_by_id(http_client, base_url)
    assert "value" in runs["r"]["metrics"]


@pytest.mark.gen_test
async def test_duplicate_column_names_first_kept(http_client, base_url, store_root):
    folder = make_run(store_root, "e", "r")
    table = pa.Table.from_arrays([pa.array([0, 1]), pa.array([1.0, 2.0]), pa.array([3.0, 4.0])],
                                 names=["step", "loss", "loss"])
    write_parquet(os.path.join(folder, "vectors.parquet"), table)
    rows = await fetch_json(http_client, base_url, run_url("e", "r", "metrics"))
    assert [row["loss"] for row in rows] == [1.0, 2.0]


# Live segments


@pytest.mark.gen_test
async def test_segments_merged_by_step(http_client, base_url, store_root):
    """Segments differ in column order, the second adds a column, and step 2 is logged three times."""
    folder = make_run(store_root, "e", "r", "RUNNING", heartbeat_at=now_iso())
    write_segment(os.path.join(folder, "vectors-0000.arrow"),
                  metric_table([0, 1, 2], loss=[1.0, 0.9, 0.8], acc=[None, None, 0.5]))
    second = metric_table([2, 3, 2], acc=[0.6, 0.65, 0.7], lr=[0.1, 0.2, None], loss=[None, 0.7, None])
    write_segment(os.path.join(folder, "vectors-0001.arrow"),
                  second.select(["acc", "timestamp", "step", "lr", "loss"]))
    rows = await fetch_json(http_client, base_url, run_url("e", "r", "metrics"))
    assert [row["step"] for row in rows] == [0, 1, 2, 3]
    assert rows[2]["loss"] == 0.8  # A later null does not replace a value.
    assert rows[2]["acc"] == 0.7  # The last non-null value wins.
    assert rows[2]["lr"] == 0.1
    assert rows[0]["lr"] is None
    details = await fetch_json(http_client, base_url, run_url("e", "r"))
    assert {c["name"] for c in details["columns"]} == {"step", "timestamp", "loss", "acc", "lr"}


@pytest.mark.gen_test
async def test_half_written_batch_not_served(http_client, base_url, store_root):
    batches = [metric_table([i * 2, i * 2 + 1], loss=[float(i)] * 2) for i in range(3)]
    data, ends = stream_bytes(*batches)
    for cut in (ends[1] + 3, (ends[1] + ends[2]) // 2, ends[2] - 1):
        folder = make_run(store_root, "e", "cut-%d" % cut, "RUNNING", heartbeat_at=now_iso())
        path = os.path.join(folder, "vectors-0000.arrow")
        write_text(path, data[:cut])
        rows = await fetch_json(http_client, base_url, run_url("e", "cut-%d" % cut, "metrics"))
        assert [row["step"] for row in rows] == [0, 1, 2, 3]
        with open(path, "ab") as f:
            f.write(data[cut:])
        rows = await fetch_json(http_client, base_url, run_url("e", "cut-%d" % cut, "metrics"))
        assert [row["step"] for row in rows] == [0, 1, 2, 3, 4, 5]


@pytest.mark.gen_test
async def test_segments_older_than_parquet_skipped(http_client, base_url, store_root):
    folder = make_run(store_root, "e", "r")
    segment = os.path.join(folder, "vectors-0000.arrow")
    write_segment(segment, metric_table([0, 1, 2], loss=[3.0, 2.0, 1.0]))
    set_mtime(segment, time.time() - 10)
    write_parquet(os.path.join(folder, "vectors.parquet"), metric_table([0, 1, 2], loss=[3.0, 2.0, 1.0]))
    rows = await fetch_json(http_client, base_url, run_url("e", "r", "metrics"))
    assert [row["step"] for row in rows] == [0, 1, 2]


@pytest.mark.gen_test
async def test_segments_newer_than_parquet_follow(http_client, base_url, store_root):
    folder = make_run(store_root, "e", "r", "RUNNING", heartbeat_at=now_iso())
    parquet = os.path.join(folder, "vectors.parquet")
    write_parquet(parquet, metric_table([0, 1, 2], loss=[3.0, 2.0, 1.0]))
    set_mtime(parquet, time.time() - 10)
    write_segment(os.path.join(folder, "vectors-0000.arrow"), metric_table([2, 3], loss=[0.9, 0.8]))
    rows = await fetch_json(http_client, base_url, run_url("e", "r", "metrics"))
    assert [(row["step"], row["loss"]) for row in rows] == [(0, 3.0), (1, 2.0), (2, 1.0), (2, 0.9), (3, 0.8)]


@pytest.mark.gen_test
async def test_dictionary_segment_is_read(http_client, base_url, store_root):
    """A segment from another writer may carry dictionary batches before its record batches."""
    folder = make_run(store_root, "e", "r", "RUNNING", heartbeat_at=now_iso())
    table = metric_table([0, 1], phase=pa.array(["train", "eval"]).dictionary_encode())
    with pa.ipc.new_stream(os.path.join(folder, "vectors-0000.arrow"), table.schema) as writer:
        writer.write_table(table)
    rows = await fetch_json(http_client, base_url, run_url("e", "r", "metrics"))
    assert [row["phase"] for row in rows] == ["train", "eval"]


@pytest.mark.gen_test
@pytest.mark.parametrize("read_between", [False, True], ids=["at_once", "one_by_one"])
async def test_metric_type_changes_between_segments(http_client, base_url, store_root, read_between):
    """The real logger starts a new segment with a string column where a float one was."""
    folder = make_run(store_root, "e", "r", "RUNNING", heartbeat_at=now_iso())
    write_segment(os.path.join(folder, "vectors-0000.arrow"), metric_table([0], note=[1.5], loss=[1.0]))
    if read_between:
        assert len(await fetch_json(http_client, base_url, run_url("e", "r", "metrics"))) == 1
    write_segment(os.path.join(folder, "vectors-0001.arrow"), metric_table([1], note=["diverged"], loss=[0.5]))
    rows = await fetch_json(http_client, base_url, run_url("e", "r", "metrics"))
    # The logger keeps a column's first type and drops the string at close, and so does the server.
    assert [(row["note"], row["loss"]) for row in rows] == [(1.5, 1.0), (None, 0.5)]


@pytest.mark.gen_test
async def test_corrupt_batch_serves_rows_before(http_client, base_url, store_root):
    folder = make_run(store_root, "e", "r", "RUNNING", heartbeat_at=now_iso())
    data, ends = stream_bytes(metric_table([0, 1], loss=[1.0, 0.5]), metric_table([2, 3], loss=[0.2, 0.1]))
    # The second batch keeps its length prefix but its body is garbage.
    garbage = data[: ends[0] + 8] + b"\xab" * (ends[1] - ends[0] - 8)
    write_text(os.path.join(folder, "vectors-0000.arrow"), garbage)
    rows = await fetch_json(http_client, base_url, run_url("e", "r", "metrics"))
    assert [row["step"] for row in rows] == [0, 1]


@pytest.mark.gen_test
async def test_fifo_segment_does_not_block(http_client, base_url, store_root):
    folder = make_run(store_root, "e", "r", "RUNNING", heartbeat_at=now_iso())
    write_segment(os.path.join(folder, "vectors-0000.arrow"), metric_table([0], loss=[1.0]))
    fifo = os.path.join(folder, "vectors-0001.arrow")
    os.mkfifo(fifo)
    # Holding the write end open keeps a blocked reader blocked, and ends it once closed.
    writer = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
    try:
        response = await fetch(http_client, base_url, run_url("e", "r", "metrics"), request_timeout=5)
    finally:
        os.close(writer)
    assert response.code == 200
    assert [row["step"] for row in strict_json(response.body)] == [0]


# YAML

ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    "%s: &%s [%s]\n" % (chr(98 + i), chr(98 + i), ", ".join(["*" + chr(97 + i)] * 9)) for i in range(8)
)

BAD_RUN_YAML = {
    "malformed": "name: [unclosed\nstatus: FINISHED\n",
    "empty": "",
    "truncated": "name: bad\nexperiment: e\nstatus: RUNN",
    "list": "- status\n- FINISHED\n",
    "tabs": "name: r\n\tstatus: FINISHED\n",
    "invalid_utf8": b"name: r\xff\xfe\nstatus: FINISHED\n",
    "python_tag": "!!python/object/apply:os.system ['touch {pwned}']\n",
    "alias_bomb": ALIAS_BOMB,
}


@pytest.mark.gen_test
@pytest.mark.parametrize("kind", list(BAD_RUN_YAML))
async def test_unreadable_run_yaml_status_null(http_client, base_url, store_root, kind):
    pwned = os.path.join(store_root, "PWNED")
    folder = make_run(store_root, "e", "bad", status=None)
    text = BAD_RUN_YAML[kind]
    write_text(os.path.join(folder, "run.yaml"), text.format(pwned=pwned) if isinstance(text, str) else text)
    make_run(store_root, "e", "ok")
    runs = await runs_by_id(http_client, base_url)
    assert runs["bad"]["status"] is None
    assert runs["bad"]["name"] == "bad"
    assert runs["ok"]["status"] == "FINISHED"
    details = await fetch_json(http_client, base_url, run_url("e", "bad"))
    assert details["status"] is None
    assert not os.path.exists(pwned)


@pytest.mark.gen_test
async def test_alias_bomb_config_answered_quickly(http_client, base_url, store_root, caplog):
    folder = make_run(store_root, "e", "bomb")
    write_text(os.path.join(folder, "config.yaml"), ALIAS_BOMB)
    make_run(store_root, "e", "neighbour")
    started = time.monotonic()
    runs = await runs_by_id(http_client, base_url)
    assert time.monotonic() - started < 5
    assert runs["bomb"]["params"] == {}
    details = await fetch_json(http_client, base_url, run_url("e", "bomb"))
    assert details["config"] == {}
    assert any("config.yaml" in record.getMessage() for record in caplog.records)


@pytest.mark.gen_test
async def test_odd_config_and_experiment_yaml(http_client, base_url, store_root):
    write_text(os.path.join(store_root, "e", "experiment.yaml"), "display_name: [broken\n")
    write_text(os.path.join(make_run(store_root, "e", "scalar"), "config.yaml"), "just a string\n")
    write_yaml(os.path.join(make_run(store_root, "e", "typed", tags="not-a-list", rank="zero",
                                     duration_secs="long"), "config.yaml"), {"lr": 0.1})
    experiments = await fetch_json(http_client, base_url, "/api/experiments")
    assert experiments[0]["display_name"] == "e"
    assert experiments[0]["runs_count"] == 2
    runs = await runs_by_id(http_client, base_url)
    assert runs["scalar"]["params"] == {}
    assert runs["typed"]["tags"] == []
    assert runs["typed"]["rank"] is None
    assert runs["typed"]["duration_secs"] is None
    assert runs["typed"]["params"] == {"lr": 0.1}


@pytest.mark.gen_test
async def test_yaml_huge_integers_never_500(http_client, base_url, store_root):
    """Integers past 64 bits cannot be JSON numbers, and past 4300 digits not even Python text."""
    huge_hex = "0x" + "f" * 4000
    folder = make_run(store_root, "e", "hex", status=None)
    write_text(os.path.join(folder, "run.yaml"),
               "status: FINISHED\nname: %s\nrank: %s\nduration_secs: %s\ntags: [%s]\nscalars: {big: %s}\n"
               % ((huge_hex,) * 5))
    write_text(os.path.join(folder, "config.yaml"),
               "big: %d\nliteral: \"[%s]\"\n? %s\n: key\n" % (2**70, huge_hex, huge_hex))
    decimal_folder = make_run(store_root, "e", "decimal")
    write_text(os.path.join(decimal_folder, "config.yaml"), "digits: %s\n" % ("1" * 5000))
    runs = await runs_by_id(http_client, base_url)
    assert runs["hex"]["status"] == "FINISHED"
    assert runs["hex"]["rank"] is None
    assert runs["hex"]["params"]["big"] == str(2**70)
    assert runs["hex"]["params"][huge_hex] == "key"
    assert runs["decimal"]["params"] == {}
    details = await fetch_json(http_client, base_url, run_url("e", "hex"))
    assert details["config"]["literal"] == [huge_hex]
    await fetch_json(http_client, base_url, "/api/experiments")


@pytest.mark.gen_test
async def test_folder_without_run_yaml(http_client, base_url, store_root):
    os.makedirs(os.path.join(store_root, "e", "bare run"))
    runs = await runs_by_id(http_client, base_url)
    assert runs["bare run"]["status"] is None
    assert runs["bare run"]["name"] == "bare run"
    details = await fetch_json(http_client, base_url, run_url("e", "bare run"))
    assert details["status"] is None
    assert await fetch_json(http_client, base_url, run_url("e", "bare run", "metrics")) == []


@pytest.mark.gen_test
async def test_yaml_warning_once_per_version(http_client, base_url, store_root, caplog):
    folder = make_run(store_root, "e", "r", status=None)
    path = os.path.join(folder, "run.yaml")
    write_text(path, "status: [FINISHED\n")
    set_mtime(path, time.time() - 60)
    caplog.set_level(logging.WARNING)

    def warnings_about_run_yaml() -> int:
        return sum(path in record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING)

    for route in ("/api/experiments", "/api/experiments/e/runs", run_url("e", "r"), "/api/stats") * 2:
        await fetch_json(http_client, base_url, route)
    assert warnings_about_run_yaml() == 1
    write_text(path, "status: {FINISHED\n")
    set_mtime(path, time.time() - 30)
    await fetch_json(http_client, base_url, "/api/experiments/e/runs")
    await fetch_json(http_client, base_url, "/api/experiments/e/runs")
    assert warnings_about_run_yaml() == 2


def test_yaml_warning_once_when_threads_parse_together(tmp_path, caplog):
    """Threads that parse the same broken version at once report it once."""
    path = str(tmp_path / "run.yaml")
    write_text(path, "status: [FINISHED\n")
    set_mtime(path, time.time() - 60)
    cache = FileCache()
    together = threading.Barrier(4, timeout=10)

    def parse(name: str):
        together.wait()
        raise ParseError("while parsing a flow sequence")

    def load() -> None:
        with pytest.raises(UnreadableFile):
            cache.load(path, parse)

    caplog.set_level(logging.WARNING)
    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert sum(path in record.getMessage() for record in caplog.records) == 1


# What is and is not an experiment or a run


@pytest.mark.gen_test
async def test_hidden_and_plain_entries_ignored(http_client, base_url, store_root):
    make_run(store_root, "e", "r")
    make_run(store_root, ".hidden", "r")
    make_run(store_root, "e", ".ipynb_checkpoints")
    make_run(store_root, os.path.join("e", ".trash"), "old")
    os.makedirs(os.path.join(store_root, ".ipynb_checkpoints"))
    os.makedirs(os.path.join(store_root, "e", "artifacts", "shared"))
    write_text(os.path.join(store_root, "README.txt"), "notes\n")
    write_text(os.path.join(store_root, "e", "notes.txt"), "notes\n")
    experiments = await fetch_json(http_client, base_url, "/api/experiments")
    assert [e["id"] for e in experiments] == ["e"]
    assert list(await runs_by_id(http_client, base_url)) == ["r"]
    stats = await fetch_json(http_client, base_url, "/api/stats")
    assert stats["experiments"] == 1
    assert stats["runs"] == 1
    response = await fetch(http_client, base_url, run_url("e", "artifacts"))
    assert_api_error(response, 404)


@pytest.mark.gen_test
async def test_symlinked_runs_inside_store_only(http_client, base_url, store_root, tmp_path):
    outside = make_run(str(tmp_path), "outside", "secret")
    inside = make_run(store_root, "other", "r2")
    os.makedirs(os.path.join(store_root, "e"))
    os.symlink(outside, os.path.join(store_root, "e", "linked-out"))
    os.symlink(inside, os.path.join(store_root, "e", "linked-in"))
    os.symlink(os.path.dirname(outside), os.path.join(store_root, "linked-exp"))
    assert list(await runs_by_id(http_client, base_url)) == ["linked-in"]
    assert_api_error(await fetch(http_client, base_url, run_url("e", "linked-out")), 404)
    experiments = await fetch_json(http_client, base_url, "/api/experiments")
    assert [e["id"] for e in experiments] == ["e", "other"]


@pytest.mark.gen_test
async def test_yaml_symlinked_outside_not_read(http_client, base_url, store_root, tmp_path):
    secret = str(tmp_path / "secret.yaml")
    write_yaml(secret, {"password": "hunter2", "status": "FINISHED"})
    folder = make_run(store_root, "e", "r", status=None)
    os.symlink(secret, os.path.join(folder, "config.yaml"))
    os.symlink(secret, os.path.join(folder, "run.yaml"))
    body = (await fetch(http_client, base_url, "/api/experiments/e/runs")).body
    assert b"hunter2" not in body
    details = (await fetch(http_client, base_url, run_url("e", "r"))).body
    assert b"hunter2" not in details
    os.symlink(secret, os.path.join(store_root, "e", "experiment.yaml"))
    experiments = (await fetch(http_client, base_url, "/api/experiments")).body
    assert b"hunter2" not in experiments


@pytest.mark.gen_test
async def test_yaml_symlinked_inside_store_read(http_client, base_url, store_root):
    write_yaml(os.path.join(store_root, "e", "shared-config.yaml"), {"lr": 0.5})
    folder = make_run(store_root, "e", "r")
    os.symlink(os.path.join("..", "shared-config.yaml"), os.path.join(folder, "config.yaml"))
    runs = await runs_by_id(http_client, base_url)
    assert runs["r"]["params"] == {"lr": 0.5}


@pytest.mark.gen_test
async def test_parquet_symlinked_outside_not_read(http_client, base_url, store_root, tmp_path):
    secret = str(tmp_path / "secret.parquet")
    write_parquet(secret, metric_table([0], secret_metric=[42.0]))
    folder = make_run(store_root, "e", "r")
    os.symlink(secret, os.path.join(folder, "vectors.parquet"))
    body = (await fetch(http_client, base_url, run_url("e", "r", "metrics"))).body
    assert b"secret_metric" not in body


@pytest.mark.gen_test
async def test_non_utf8_folder_names_skipped(http_client, base_url, store_root):
    make_run(store_root, "e", "r")
    os.makedirs(os.path.join(os.fsencode(store_root), b"caf\xe9"))
    os.makedirs(os.path.join(os.fsencode(store_root), b"e", b"run-\xff"))
    write_text(os.path.join(store_root, "e", "r", "artifacts", "ok.txt"), "ok\n")
    write_text(os.path.join(os.fsencode(store_root), b"e", b"r", b"artifacts", b"bad-\xff.txt"), "bad\n")
    experiments = await fetch_json(http_client, base_url, "/api/experiments")
    assert [e["id"] for e in experiments] == ["e"]
    assert list(await runs_by_id(http_client, base_url)) == ["r"]
    entries = await fetch_json(http_client, base_url, run_url("e", "r", "artifacts"))
    assert "ok.txt" in [entry["path"] for entry in entries]
    assert (await fetch_json(http_client, base_url, "/api/stats"))["runs"] == 1


# Names in URLs

ODD_NAMES = ["实验 α", "100% done", "a+b", "v1.2.3", "q?a#b", "x" * 200]


@pytest.mark.gen_test
async def test_odd_names_are_one_segment(http_client, base_url, store_root):
    for name in ODD_NAMES:
        folder = make_run(store_root, name, "run " + name[:20])
        write_parquet(os.path.join(folder, "vectors.parquet"),
                      metric_table([0, 1], **{"train/loss": [1.0, 0.5], "val loss": [2.0, 1.0], "精度": [0.5, 0.75]}))
    experiments = await fetch_json(http_client, base_url, "/api/experiments")
    assert [e["id"] for e in experiments] == sorted(ODD_NAMES)
    for name in ODD_NAMES:
        run = "run " + name[:20]
        assert list(await runs_by_id(http_client, base_url, name)) == [run]
        rows = await fetch_json(http_client, base_url, run_url(name, run, "metrics"))
        assert set(rows[0]) == {"step", "timestamp", "train/loss", "val loss", "精度"}
    picked = await fetch_json(http_client, base_url, run_url("a+b", "run a+b", "metrics?columns=train%2Floss"))
    assert set(picked[0]) == {"step", "timestamp", "train/loss"}
    runs = await fetch_json(http_client, base_url, "/api/experiments/a+b/runs?metrics=%E7%B2%BE%E5%BA%A6")
    assert runs[0]["metrics"] == {"精度": 0.75}


@pytest.mark.gen_test
async def test_names_decoded_once(http_client, base_url, store_root):
    make_run(store_root, "%41", "r-pct")
    make_run(store_root, "A", "r-a")
    make_run(store_root, "e", "a+b")
    assert list(await runs_by_id(http_client, base_url, "%41")) == ["r-pct"]
    assert [r["id"] for r in await fetch_json(http_client, base_url, "/api/experiments/%41/runs")] == ["r-a"]
    assert (await fetch_json(http_client, base_url, "/api/experiments/e/runs/a+b"))["id"] == "a+b"
    assert_api_error(await fetch(http_client, base_url, "/api/experiments/e/runs/a%20b"), 404)
    assert_api_error(await fetch(http_client, base_url, "/api/experiments/%E5%AE%9E%E9%AA%8C"), 404)


@pytest.mark.gen_test
async def test_invalid_utf8_in_url_is_400(http_client, base_url, store_root):
    make_run(store_root, "e", "r")
    assert_api_error(await fetch(http_client, base_url, "/api/experiments/%ff/runs"), 400)


# Artifacts

SECRET = "TOP-SECRET-MARKER"

TRAVERSALS = [
    "artifacts/../../../secret.txt",
    "artifacts/..%2f..%2f..%2fsecret.txt",
    "artifacts/%2e%2e/%2e%2e/%2e%2e/secret.txt",
    "artifacts/%2e%2e%2f%2e%2e%2f%2e%2e%2fsecret.txt",
    "artifacts/sub/..%5c..%5c..%5c..%5csecret.txt",
    "artifacts/%252e%252e/%252e%252e/secret.txt",
    "artifacts//etc/passwd",
    "artifacts/%2fetc%2fpasswd",
    "artifacts/ok.txt%00.png",
    "artifacts/link-out.txt",
    "artifacts/linked-dir/secret.txt",
    "artifacts/sub",
    "files/../../secret.txt",
    "files/%2e%2e/%2e%2e/secret.txt",
    "files/artifacts/link-out.txt",
    "logs/..%2f..%2fsecret.txt",
]


@pytest.fixture
def artifact_run(store_root, tmp_path) -> str:
    """Run ``e/r`` with artifacts ``ok.txt``, ``sub/deep.txt`` and links out of the run."""
    folder = make_run(store_root, "e", "r")
    artifacts = os.path.join(folder, "artifacts")
    write_text(os.path.join(artifacts, "ok.txt"), "ok\n")
    write_text(os.path.join(artifacts, "sub", "deep.txt"), "deep\n")
    write_text(os.path.join(store_root, "secret.txt"), SECRET)
    write_text(os.path.join(str(tmp_path), "outside", "secret.txt"), SECRET)
    os.symlink(os.path.join(str(tmp_path), "outside", "secret.txt"), os.path.join(artifacts, "link-out.txt"))
    os.symlink(os.path.join(str(tmp_path), "outside"), os.path.join(artifacts, "linked-dir"))
    write_text(os.path.join(folder, "run.log"), "line\n")
    return folder


@pytest.mark.gen_test
@pytest.mark.parametrize("path", TRAVERSALS)
async def test_artifact_traversal_refused(http_client, base_url, artifact_run, path):
    response = await fetch(http_client, base_url, run_url("e", "r", path))
    assert response.code in (400, 403, 404), response.body[:300]
    assert_api_error(response, response.code)
    assert SECRET.encode() not in response.body


@pytest.mark.gen_test
@pytest.mark.parametrize("experiment, run", [("%2e%2e", "r"), ("e", "%2e%2e"), ("e", "r%00"), ("e", "%5c")])
async def test_traversal_in_names_refused(http_client, base_url, artifact_run, experiment, run):
    response = await fetch(http_client, base_url, "/api/experiments/%s/runs/%s/artifacts" % (experiment, run))
    assert response.code in (400, 404)
    assert_api_error(response, response.code)


@pytest.mark.gen_test
async def test_artifact_listing_stays_inside(http_client, base_url, artifact_run):
    entries = await fetch_json(http_client, base_url, run_url("e", "r", "artifacts"))
    paths = [entry["path"] for entry in entries]
    assert {"ok.txt", "sub/deep.txt", "run.yaml", "run.log"} <= set(paths)
    assert not [p for p in paths if p.startswith("/") or ".." in p.split("/") or "secret" in p]
    ok = await fetch(http_client, base_url, run_url("e", "r", "artifacts/ok.txt"))
    assert ok.body == b"ok\n"


# A 1x1 PNG.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)


@pytest.fixture
def typed_artifacts(store_root) -> str:
    folder = make_run(store_root, "e", "r")
    artifacts = os.path.join(folder, "artifacts")
    for name, data in {
        "plot.png": PNG, "ü plot.png": PNG, "photo.JPG": b"\xff\xd8\xff\xe0jpeg",
        "metrics.json": b'{"a": 1}', "data.csv": b"a,b\n1,2\n", "model.bin": bytes(range(256)) * 100,
        "LICENSE": b"MIT\n", "report.html": b"<script>alert(1)</script>",
        "figure.svg": b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
        "nested/table.parquet": parquet_bytes(metric_table([0], loss=[1.0])),
    }.items():
        write_text(os.path.join(artifacts, name), data)
    return artifacts


@pytest.mark.gen_test
@pytest.mark.parametrize(
    "name, mime",
    [("plot.png", "image/png"), ("ü plot.png", "image/png"), ("photo.JPG", "image/jpeg"),
     ("metrics.json", "application/json"), ("data.csv", "text/csv"),
     ("model.bin", "application/octet-stream"), ("nested/table.parquet", "application/vnd.apache.parquet")],
)
async def test_artifact_content_type(http_client, base_url, typed_artifacts, name, mime):
    response = await fetch(http_client, base_url, run_url("e", "r", "artifacts", quote(name)))
    assert response.headers["Content-Type"].split(";")[0] == mime
    with open(os.path.join(typed_artifacts, name), "rb") as f:
        assert response.body == f.read()
    entries = await fetch_json(http_client, base_url, run_url("e", "r", "artifacts"))
    assert {entry["path"]: entry["mime"] for entry in entries}[name] == mime


@pytest.mark.gen_test
async def test_file_without_extension_served(http_client, base_url, typed_artifacts):
    response = await fetch(http_client, base_url, run_url("e", "r", "artifacts/LICENSE"))
    assert response.headers["Content-Type"].split(";")[0] in ("text/plain", "application/octet-stream")


@pytest.mark.gen_test
@pytest.mark.parametrize("name", ["report.html", "figure.svg"])
async def test_active_content_is_sandboxed(http_client, base_url, typed_artifacts, name):
    response = await fetch(http_client, base_url, run_url("e", "r", "artifacts", name))
    assert response.code == 200
    sandboxed = "sandbox" in response.headers.get("Content-Security-Policy", "")
    passive = not response.headers["Content-Type"].startswith(("text/html", "image/svg"))
    assert sandboxed or passive
    assert response.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.gen_test
async def test_download_non_ascii_name(http_client, base_url, typed_artifacts):
    response = await fetch(http_client, base_url, run_url("e", "r", "artifacts", quote("ü plot.png") + "?download=1"))
    disposition = response.headers["Content-Disposition"]
    assert disposition.startswith("attachment")
    assert "filename*=UTF-8''%C3%BC%20plot.png" in disposition


@pytest.mark.gen_test
async def test_download_keeps_requested_name(http_client, base_url, typed_artifacts):
    os.symlink("plot.png", os.path.join(typed_artifacts, "latest.png"))
    response = await fetch(http_client, base_url, run_url("e", "r", "artifacts/latest.png?download=1"))
    assert response.body == PNG
    assert 'filename="latest.png"' in response.headers["Content-Disposition"]


@pytest.mark.gen_test
async def test_artifact_head_and_etag(http_client, base_url, typed_artifacts):
    url = run_url("e", "r", "artifacts/plot.png")
    head = await fetch(http_client, base_url, url, method="HEAD")
    assert head.code == 200
    assert head.body == b""
    assert int(head.headers["Content-Length"]) == len(PNG)
    again = await fetch(http_client, base_url, url, headers={"If-None-Match": head.headers["Etag"]})
    assert again.code == 304
    assert again.body == b""


@pytest.mark.gen_test
@pytest.mark.parametrize("path", ["artifacts/nested", "artifacts/nope.png", "files/artifacts"])
async def test_missing_or_folder_artifact_is_404(http_client, base_url, typed_artifacts, path):
    assert_api_error(await fetch(http_client, base_url, run_url("e", "r", path)), 404)


# Log tails


@pytest.fixture
def log_run(store_root) -> str:
    folder = make_run(store_root, "e", "r")
    write_text(os.path.join(folder, "run.log"), "".join("[ts] [INFO] line %d\n" % i for i in range(20000)))
    write_text(os.path.join(folder, "console.log"),
               b"first\r\nprogress 10%\rprogress 100%\r\n" + b"x" * 50000 + b"\nbad \xff\xfe bytes\nlast line")
    return folder


async def tail(http_client, base_url, name, query):
    return await fetch(http_client, base_url, run_url("e", "r", "logs", name) + query)


@pytest.mark.gen_test
async def test_log_tail_last_lines(http_client, base_url, log_run):
    response = await tail(http_client, base_url, "run.log", "?tail=3")
    assert response.body.decode() == "".join("[ts] [INFO] line %d\n" % i for i in (19997, 19998, 19999))
    whole = await tail(http_client, base_url, "run.log", "?tail=100000")
    assert len(whole.body.splitlines()) == 20000
    with open(os.path.join(log_run, "run.log"), "a") as f:
        f.write("[ts] [INFO] appended\n")
    appended = await tail(http_client, base_url, "run.log", "?tail=1")
    assert appended.body == b"[ts] [INFO] appended\n"


@pytest.mark.gen_test
async def test_log_tail_zero_is_empty(http_client, base_url, log_run):
    response = await tail(http_client, base_url, "run.log", "?tail=0")
    assert response.code == 200
    assert response.body == b""


@pytest.mark.gen_test
@pytest.mark.parametrize("value", ["abc", "-3", "1e3", "", "2.5"])
async def test_log_tail_not_integer_is_400(http_client, base_url, log_run, value):
    assert_api_error(await tail(http_client, base_url, "run.log", "?tail=" + value), 400, mentions="tail")


@pytest.mark.gen_test
async def test_log_tail_without_final_newline(http_client, base_url, log_run):
    response = await tail(http_client, base_url, "console.log", "?tail=1")
    assert response.body == b"last line"


@pytest.mark.gen_test
async def test_log_tail_replaces_invalid_utf8(http_client, base_url, log_run):
    response = await tail(http_client, base_url, "console.log", "?tail=2")
    assert response.body.decode("utf-8") == "bad \ufffd\ufffd bytes\nlast line"


@pytest.mark.gen_test
async def test_log_tail_crlf_lines(http_client, base_url, log_run):
    response = await tail(http_client, base_url, "console.log", "?tail=5")
    lines = response.body.decode("utf-8").split("\n")
    assert lines[:2] == ["first\r", "progress 10%\rprogress 100%\r"]
    assert lines[2] == "x" * 50000


@pytest.mark.gen_test
@pytest.mark.parametrize("name", ["nope.log", "config.yaml", "run.yaml", "vectors.parquet"])
async def test_other_log_names_are_404(http_client, base_url, log_run, name):
    assert_api_error(await tail(http_client, base_url, name, "?tail=1"), 404)


# Stale runs and totals


@pytest.mark.gen_test
async def test_old_running_run_is_stale(http_client, base_url, store_root):
    old = make_run(store_root, "e", "old", "RUNNING", heartbeat_at=now_iso(-3600))
    write_parquet(os.path.join(old, "vectors.parquet"), metric_table([0], loss=[1.0]))
    age_files(old, 3600)
    make_run(store_root, "e", "live", "RUNNING", heartbeat_at=now_iso())
    finished = make_run(store_root, "e", "done", "FINISHED")
    age_files(finished, 3600)
    runs = await runs_by_id(http_client, base_url)
    assert runs["old"]["stale"] is True
    assert runs["live"]["stale"] is False
    assert runs["done"]["stale"] is False
    assert runs["old"]["status"] == "RUNNING"
    details = await fetch_json(http_client, base_url, run_url("e", "old"))
    assert details["stale"] is True
    stats = await fetch_json(http_client, base_url, "/api/stats")
    assert stats["active"] == 1
    assert stats["stale"] == 1
    experiments = await fetch_json(http_client, base_url, "/api/experiments")
    assert experiments[0]["active_runs"] == 1


@pytest.mark.gen_test
async def test_recent_file_keeps_run_active(http_client, base_url, store_root):
    folder = make_run(store_root, "e", "r", "RUNNING", heartbeat_at=now_iso(-3600))
    age_files(folder, 3600)
    write_segment(os.path.join(folder, "vectors-0000.arrow"), metric_table([0], loss=[1.0]))
    runs = await runs_by_id(http_client, base_url)
    assert runs["r"]["stale"] is False


@pytest.mark.gen_test
async def test_odd_started_at_values_sorted(http_client, base_url, store_root):
    """Runs sort newest first by the instant ``started_at`` denotes, whatever its format."""
    for run, started in [("naive", "2026-01-05T09:10:00"), ("space", "2026-01-05 09:20:00"),
                         ("offset", "2026-01-05T04:30:00-05:00"), ("utc", "2026-01-05T09:05:00.123456789Z"),
                         ("ancient", "0001-01-01T00:00:00+05:00"), ("garbage", "yesterday")]:
        make_run(store_root, "e", run, started_at=started, heartbeat_at=started)
    runs = await fetch_json(http_client, base_url, "/api/experiments/e/runs")
    assert [run["id"] for run in runs][:4] == ["offset", "space", "naive", "utc"]


@pytest.mark.gen_test
async def test_new_and_removed_runs_seen(http_client, base_url, store_root):
    make_run(store_root, "e", "r0")
    assert list(await runs_by_id(http_client, base_url)) == ["r0"]
    folder = make_run(store_root, "e", "r1")
    write_parquet(os.path.join(folder, "vectors.parquet"), metric_table([0, 1, 2, 3, 4], loss=[1.0] * 5))
    assert sorted(await runs_by_id(http_client, base_url)) == ["r0", "r1"]
    assert len(await fetch_json(http_client, base_url, run_url("e", "r1", "metrics"))) == 5
    for name in os.listdir(folder):
        os.remove(os.path.join(folder, name))
    os.rmdir(folder)
    assert list(await runs_by_id(http_client, base_url)) == ["r0"]
    assert_api_error(await fetch(http_client, base_url, run_url("e", "r1", "metrics")), 404)


@pytest.mark.gen_test
async def test_many_runs_all_listed(http_client, base_url, store_root):
    count = 300
    for i in range(count):
        started = datetime.fromtimestamp(T0.timestamp() + (i * 7919) % count * 60, timezone.utc)
        make_run(store_root, "sweep", "run-%05d" % i, started_at=started.strftime("%Y-%m-%dT%H:%M:%SZ"))
    for i in range(5):
        os.makedirs(os.path.join(store_root, "sweep", "bare-%02d" % i))
    runs = await fetch_json(http_client, base_url, "/api/experiments/sweep/runs")
    assert len({run["id"] for run in runs}) == count + 5
    started = [run["started_at"] for run in runs[:count]]
    assert started == sorted(started, reverse=True)
    assert [run["status"] for run in runs[count:]] == [None] * 5
    filtered = await fetch_json(http_client, base_url, "/api/experiments/sweep/runs?metrics=loss")
    assert len(filtered) == count + 5
    experiments = await fetch_json(http_client, base_url, "/api/experiments")
    assert experiments[0]["runs_count"] == count + 5


def test_table_cache_evicts_least_recent(tmp_path):
    """Tables beyond the byte budget leave memory; answers stay the same."""
    from expman_tornado.store import Store

    root = str(tmp_path / "store")
    for index in range(4):
        folder = make_run(root, "cache", "r%d" % index)
        table = metric_table(list(range(2000)), loss=[float(i) for i in range(2000)])
        write_parquet(os.path.join(folder, "vectors.parquet"), table)
    store = Store(root, cache_bytes=1)
    first = [store.metrics_table("cache", "r%d" % i).num_rows for i in range(4)]
    assert first == [2000] * 4
    assert len([t for t in store._tables.values() if t.nbytes]) == 1
    tails = {run["id"]: run["metrics"] for run in store.runs("cache")}
    assert set(tails) == {"r0", "r1", "r2", "r3"}
    assert store.metrics_table("cache", "r0").num_rows == 2000


def test_append_reads_only_changed_segments(tmp_path, monkeypatch):
    """A live run with many segments: an update decodes the new segment only."""
    from expman_tornado.store import Store
    from expman_tornado.store import tables as store_tables

    root = str(tmp_path / "store")
    folder = make_run(root, "many", "live", status="RUNNING")
    for index in range(50):
        write_segment(os.path.join(folder, "vectors-%04d.arrow" % index),
                      metric_table([2 * index, 2 * index + 1], loss=[1.0, 2.0]))
    store = Store(root)
    assert store.metrics_table("many", "live").num_rows == 100

    reads = []
    original = store_tables.SegmentReader.read
    monkeypatch.setattr(store_tables.SegmentReader, "read",
                        lambda self: reads.append(self.path) or original(self))
    write_segment(os.path.join(folder, "vectors-0050.arrow"), metric_table([100, 101], loss=[3.0, 4.0]))
    table = store.metrics_table("many", "live")
    assert table.num_rows == 102
    assert [os.path.basename(path) for path in reads] == ["vectors-0050.arrow"]


def test_listing_measures_each_table_once(tmp_path, monkeypatch):
    """Cache accounting stays linear: a listing of N runs measures about N tables, not N²."""
    from expman_tornado.store import Store
    from expman_tornado.store.runtable import RunTable

    root = str(tmp_path / "store")
    for index in range(60):
        folder = make_run(root, "wide", "r%02d" % index)
        write_parquet(os.path.join(folder, "vectors.parquet"), metric_table([0, 1], loss=[1.0, 0.5]))
    measured = []
    original = RunTable.nbytes
    monkeypatch.setattr(RunTable, "nbytes", property(lambda self: measured.append(1) or original.fget(self)))
    runs = Store(root).runs("wide")
    assert len(runs) == 60
    assert len(measured) <= 2 * 60


@pytest.mark.gen_test
async def test_unreadable_files_named_in_details(http_client, base_url, store_root):
    """Details name each file that cannot be parsed, with the reason, and the config route is a 422."""
    folder = make_run(store_root, "e", "r", "FINISHED")
    write_text(os.path.join(folder, "config.yaml"), "lr: [1,\n")
    parquet = os.path.join(folder, "vectors.parquet")
    write_text(parquet, damaged_parquet("truncated"))
    set_mtime(parquet, time.time() - 60)
    details = await fetch_json(http_client, base_url, run_url("e", "r"))
    assert set(details["unreadable"]) == {"config.yaml", "vectors.parquet"}
    assert all(reason for reason in details["unreadable"].values())
    assert details["config"] == {}
    assert details["rows"] is None
    response = await fetch(http_client, base_url, run_url("e", "r", "config"))
    assert_api_error(response, 422, mentions="config.yaml")


@pytest.mark.gen_test
async def test_unreadable_run_yaml_named_in_details(http_client, base_url, store_root):
    folder = make_run(store_root, "e", "r", status=None)
    write_text(os.path.join(folder, "run.yaml"), "name: [r\nstatus: FINISHED\n")
    details = await fetch_json(http_client, base_url, run_url("e", "r"))
    assert list(details["unreadable"]) == ["run.yaml"]
    assert details["status"] is None
    response = await fetch(http_client, base_url, run_url("e", "r", "metadata"))
    assert_api_error(response, 422, mentions="run.yaml")


@pytest.mark.gen_test
async def test_readable_run_has_no_unreadable_files(http_client, base_url, store_root):
    folder = make_run(store_root, "e", "r")
    write_yaml(os.path.join(folder, "config.yaml"), {"lr": 0.1})
    write_parquet(os.path.join(folder, "vectors.parquet"), metric_table([0, 1], loss=[1.0, 0.5]))
    details = await fetch_json(http_client, base_url, run_url("e", "r"))
    assert details["unreadable"] == {}
    assert await fetch_json(http_client, base_url, run_url("e", "r", "config")) == {"lr": 0.1}


def test_file_deleted_while_parsed_is_missing(tmp_path, caplog):
    """A file removed between its stat and its read counts as missing, with no "Cannot parse" warning."""
    path = tmp_path / "run.yaml"
    path.write_text("status: FINISHED\n")

    def removed_then_read(name: str):
        os.unlink(name)
        with open(name) as file:
            return file.read()

    cache = FileCache()
    with caplog.at_level(logging.WARNING), pytest.raises(FileNotFoundError):
        cache.load(str(path), removed_then_read, "yaml")
    assert not [record for record in caplog.records if "Cannot parse" in record.getMessage()]
