"""The ``best`` value of each metric in the runs listing and the run details."""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pytest

from expman_tornado.store import Store
from expman_tornado.store.summary import best_values

from .conftest import strict_json
from .stores import make_run, metric_table, stream_bytes, write_parquet, write_text

NAN, INF = float("nan"), float("inf")


async def runs_by_id(http_client, base_url, query: str = "") -> dict:
    response = await http_client.fetch(base_url + "/api/experiments/vision/runs" + query)
    return {run["id"]: run for run in strict_json(response.body)}


@pytest.mark.gen_test
async def test_best_of_real_runs(http_client, base_url):
    runs = await runs_by_id(http_client, base_url)
    loss = runs["baseline"]["best"]["loss"]
    assert loss["min"] == pytest.approx(1 / 200)
    assert loss["min_step"] == 199
    assert loss["max"] == 1.0
    assert loss["max_step"] == 0
    assert runs["baseline"]["best"]["val_acc"] == {"min": 0.0, "min_step": 0, "max": 0.75, "max_step": 150}
    # NaN and ±Inf are skipped: the finite losses of this run are 1.0 and 0.5.
    assert runs["nan"]["best"] == {"loss": {"min": 0.5, "min_step": 3, "max": 1.0, "max_step": 0}}
    assert runs["failed"]["best"] == {"loss": {"min": 3.0, "min_step": 0, "max": 3.0, "max_step": 0}}


@pytest.mark.gen_test
async def test_best_follows_metrics_filter(http_client, base_url):
    runs = await runs_by_id(http_client, base_url, "?metrics=val_acc")
    assert list(runs["baseline"]["best"]) == ["val_acc"]
    assert runs["nan"]["best"] == {}


@pytest.mark.gen_test
async def test_best_in_run_details(http_client, base_url):
    response = await http_client.fetch(base_url + "/api/experiments/vision/runs/baseline")
    details = strict_json(response.body)
    assert details["best"]["loss"]["min_step"] == 199
    assert details["best"]["val_acc"]["max"] == 0.75


def test_best_values_edge_cases():
    big = 2**53 + 1
    table = metric_table(
        [0, 1, 2, None],
        only_nan=[NAN, NAN, None, NAN],
        inf_and_values=[INF, -2.0, -INF, 5.0],
        ints=pa.array([3, big, -7, None], pa.int64()),
        small=pa.array([0.1, 0.3, None, None], pa.float32()),
        text=["a", "b", "c", "d"],
        ties=[1.0, 0.0, 0.0, 1.0],
    )
    best = best_values(table)
    assert "only_nan" not in best
    assert "text" not in best
    assert best["inf_and_values"] == {"min": -2.0, "min_step": 1, "max": 5.0, "max_step": None}
    assert best["ints"] == {"min": -7, "min_step": 2, "max": big, "max_step": 1}
    assert best["small"] == {"min": 0.1, "min_step": 0, "max": 0.3, "max_step": 1}
    # The first row holding an extreme value gives its step.
    assert best["ties"] == {"min": 0.0, "min_step": 1, "max": 1.0, "max_step": 0}


def test_best_empty_table():
    assert best_values(metric_table([])) == {}


def test_best_cached_by_file_identity(tmp_path, monkeypatch):
    root = str(tmp_path)
    folder = make_run(root, "e", "r")
    write_parquet(os.path.join(folder, "vectors.parquet"), metric_table([0, 1], loss=[2.0, 1.0]))
    store = Store(root)
    calls = []
    monkeypatch.setattr("expman_tornado.store.store.best_values",
                        lambda table: calls.append(1) or best_values(table))

    assert store.runs("e")[0]["best"]["loss"]["min"] == 1.0
    assert store.runs("e")[0]["best"]["loss"]["min"] == 1.0
    assert len(calls) == 1

    write_parquet(os.path.join(folder, "vectors.parquet"), metric_table([0, 1, 2], loss=[2.0, 1.0, np.float64(0.5)]))
    assert store.runs("e")[0]["best"]["loss"] == {"min": 0.5, "min_step": 2, "max": 2.0, "max_step": 0}
    assert len(calls) == 2


def test_best_updated_from_new_rows(tmp_path, monkeypatch):
    root = str(tmp_path)
    folder = make_run(root, "e", "r", status="RUNNING")
    data, ends = stream_bytes(metric_table([0, 1], loss=[2.0, 1.0]),
                              metric_table([2, 3], loss=[1.0, 0.5]),
                              metric_table([4, 5], loss=[NAN, 9.0]))
    path = os.path.join(folder, "vectors-0000.arrow")
    write_text(path, data[: ends[0]])
    store = Store(root)
    rows_seen = []
    monkeypatch.setattr("expman_tornado.store.store.best_values",
                        lambda table: rows_seen.append(table.num_rows) or best_values(table))
    assert store.runs("e")[0]["best"]["loss"] == {"min": 1.0, "min_step": 1, "max": 2.0, "max_step": 0}

    for start, end in zip(ends, ends[1:]):
        with open(path, "ab") as f:
            f.write(data[start:end])
        store.runs("e")
    # Each update looked at the new rows only, and ties keep the first step.
    assert rows_seen == [2, 2, 2]
    assert store.runs("e")[0]["best"]["loss"] == {"min": 0.5, "min_step": 3, "max": 9.0, "max_step": 5}
    assert best_values(store.metrics_table("e", "r")) == store.runs("e")[0]["best"]
