"""Histograms: ``GET …/runs/:run/histograms`` on runs written by the real logger and by hand."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from expman_tornado.store import Store
from expman_tornado.store import histograms as histograms_module
from expman_tornado.store.tables import merge_steps

from .conftest import assert_api_error, strict_json
from .stores import make_run, metric_table, new_run, write_parquet, write_segment

EXPERIMENT = "hist"


def write_histogram_store(root: str) -> None:
    """Write runs ``layers`` (two tags, closed), ``exact`` (given bins) and ``plain`` (no histograms)."""
    rng = np.random.default_rng(0)
    run = new_run(root, EXPERIMENT, "layers")
    # The logger keeps one histogram per step when it closes a run, so each tag
    # gets its own steps here.
    for step in range(0, 20, 2):
        run.log_histogram("weights", rng.normal(size=200), step=step)
    for step in range(1, 20, 2):
        run.log_histogram("bias", rng.normal(size=50), step=step, bins=8)
    run.log_vector({"loss": 1.0}, step=0)
    run.close()

    run = new_run(root, EXPERIMENT, "exact")
    run.log_histogram("given", edges=[0.0, 0.5, 2.0], counts=[3, 4], step=7)
    run.log_histogram("given", edges=[-1.0, 1.0], counts=[10], step=8)
    run.close()

    run = new_run(root, EXPERIMENT, "plain")
    run.log_vector({"loss": 1.0}, step=0)
    run.close()


@pytest.fixture(scope="module")
def histogram_store(tmp_path_factory) -> str:
    root = str(tmp_path_factory.mktemp("histograms"))
    write_histogram_store(root)
    return root


@pytest.fixture
def store_root(histogram_store) -> str:
    return histogram_store


def url(run: str, query: str = "") -> str:
    return "/api/experiments/%s/runs/%s/histograms%s" % (EXPERIMENT, run, query)


async def get_json(http_client, base_url, path):
    response = await http_client.fetch(base_url + path)
    assert response.headers["Content-Type"].startswith("application/json")
    return strict_json(response.body)


@pytest.mark.gen_test
async def test_histograms_by_tag(http_client, base_url):
    body = await get_json(http_client, base_url, url("layers"))
    assert list(body) == ["bias", "weights"]
    assert [h["step"] for h in body["weights"]] == list(range(0, 20, 2))
    assert [h["step"] for h in body["bias"]] == list(range(1, 20, 2))
    for histogram in body["weights"] + body["bias"]:
        assert set(histogram) == {"step", "edges", "counts"}
        assert len(histogram["edges"]) == len(histogram["counts"]) + 1
        assert all(isinstance(edge, float) for edge in histogram["edges"])
        assert all(isinstance(count, int) for count in histogram["counts"])
    assert sum(body["weights"][0]["counts"]) == 200
    assert len(body["bias"][0]["counts"]) == 8


@pytest.mark.gen_test
async def test_histograms_match_parquet(http_client, base_url, histogram_store):
    body = await get_json(http_client, base_url, url("layers"))
    rows = pq.read_table(os.path.join(histogram_store, EXPERIMENT, "layers", "histograms.parquet")).to_pylist()
    for row in rows:
        served = [h for h in body[row["tag"]] if h["step"] == row["step"]]
        assert served == [{"step": row["step"], "edges": json.loads(row["edges"]),
                           "counts": json.loads(row["counts"])}]


@pytest.mark.gen_test
async def test_histograms_exact_bins(http_client, base_url):
    body = await get_json(http_client, base_url, url("exact"))
    assert body == {"given": [{"step": 7, "edges": [0.0, 0.5, 2.0], "counts": [3, 4]},
                              {"step": 8, "edges": [-1.0, 1.0], "counts": [10]}]}


@pytest.mark.gen_test
@pytest.mark.parametrize("max_steps, steps", [
    (1, [0]),
    (2, [0, 18]),
    (3, [0, 8, 18]),
    (4, [0, 6, 12, 18]),
    (10, list(range(0, 20, 2))),
    (50, list(range(0, 20, 2))),
    (0, list(range(0, 20, 2))),
])
async def test_histograms_max_steps(http_client, base_url, max_steps, steps):
    body = await get_json(http_client, base_url, url("layers", "?tag=weights&max_steps=%d" % max_steps))
    assert [h["step"] for h in body["weights"]] == steps


@pytest.mark.gen_test
async def test_histograms_tag_filter(http_client, base_url):
    assert list(await get_json(http_client, base_url, url("layers", "?tag=bias"))) == ["bias"]
    both = await get_json(http_client, base_url, url("layers", "?tag=bias&tag=weights&max_steps=2"))
    assert list(both) == ["bias", "weights"]
    assert [len(both[tag]) for tag in both] == [2, 2]
    assert await get_json(http_client, base_url, url("layers", "?tag=nope")) == {}


@pytest.mark.gen_test
async def test_histograms_none_logged(http_client, base_url):
    assert await get_json(http_client, base_url, url("plain")) == {}


@pytest.mark.gen_test
@pytest.mark.parametrize("query", ["?max_steps=x", "?max_steps=-1", "?max_steps=1.5"])
async def test_histograms_bad_max_steps(http_client, base_url, query):
    response = await http_client.fetch(base_url + url("layers", query), raise_error=False)
    assert_api_error(response, 400, "max_steps")


@pytest.mark.gen_test
async def test_histograms_unknown_run(http_client, base_url):
    response = await http_client.fetch(base_url + url("nope"), raise_error=False)
    assert_api_error(response, 404, "nope")


# A live run: segments, several tags at one step


def wait_for_rows(store: Store, run: str, rows: int, timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        body = store.histograms(EXPERIMENT, run)
        if sum(len(series) for series in body.values()) >= rows or time.monotonic() > deadline:
            return body
        time.sleep(0.05)


def test_live_segments_keep_tags_apart(tmp_path):
    root = str(tmp_path)
    run = new_run(root, EXPERIMENT, "live", flush_interval_ms=50)
    try:
        run.log_histogram("a", edges=[0.0, 1.0], counts=[1], step=0)
        run.log_histogram("b", edges=[0.0, 1.0], counts=[2], step=0)
        run.log_histogram("a", edges=[0.0, 1.0], counts=[3], step=1)
        store = Store(root)
        body = wait_for_rows(store, "live", 3)
        folder = os.path.join(root, EXPERIMENT, "live")
        assert any(name.startswith("histograms-") for name in os.listdir(folder))
        assert {tag: [(h["step"], h["counts"].tolist()) for h in series] for tag, series in body.items()} == {
            "a": [(0, [1]), (1, [3])],
            "b": [(0, [2])],
        }

        # Rows logged later are appended, and the tag at a step seen before is a new row.
        run.log_histogram("b", edges=[0.0, 1.0], counts=[4], step=1)
        body = wait_for_rows(store, "live", 4)
        assert [(h["step"], h["counts"].tolist()) for h in body["b"]] == [(0, [2]), (1, [4])]
    finally:
        run.close()
    # After close the server shows what the logger merged into histograms.parquet.
    on_disk = pq.read_table(os.path.join(folder, "histograms.parquet")).to_pylist()
    body = store.histograms(EXPERIMENT, "live")
    assert sum(len(series) for series in body.values()) == len(on_disk)


def test_histograms_parsed_once(tmp_path, monkeypatch):
    root = str(tmp_path)
    folder = make_run(root, EXPERIMENT, "r", status="RUNNING")
    calls = []
    parse = histograms_module.parse_numbers
    monkeypatch.setattr(histograms_module, "parse_numbers", lambda text: calls.append(text) or parse(text))
    first = histogram_table([0, 1], ["a", "a"])
    write_segment(os.path.join(folder, "histograms-0000.arrow"), first)
    store = Store(root)

    assert [h["step"] for h in store.histograms(EXPERIMENT, "r")["a"]] == [0, 1]
    assert len(calls) == 4
    store.histograms(EXPERIMENT, "r")
    assert len(calls) == 4

    # The same step under another tag, in a later segment: appended, only its row parsed.
    write_segment(os.path.join(folder, "histograms-0001.arrow"), histogram_table([1], ["b"]))
    body = store.histograms(EXPERIMENT, "r")
    assert {tag: [h["step"] for h in series] for tag, series in body.items()} == {"a": [0, 1], "b": [1]}
    assert len(calls) == 6


def histogram_table(steps, tags, edges=None, counts=None) -> pa.Table:
    edges = edges or ["[0.0,1.0,2.0]"] * len(steps)
    counts = counts or ["[1,2]"] * len(steps)
    return metric_table(steps, tag=tags, edges=edges, counts=counts, total=[3.0] * len(steps))


def test_bad_rows_skipped(tmp_path, caplog):
    root = str(tmp_path)
    folder = make_run(root, EXPERIMENT, "r")
    table = histogram_table(
        [0, 1, 2, 3, 4, 5, 6],
        ["a", "a", "a", None, "a", "a", "a"],
        edges=["[0,1,2]", "not json", "[0,1]", "[0,1,2]", '{"a": 1}', "[0,null,2]", '[0,"x",2]'],
        counts=["[1,2]", "[1,2]", "[1,2]", "[1,2]", "[1,2]", "[5,6]", "[1,2]"],
    )
    write_parquet(os.path.join(folder, "histograms.parquet"), table)
    body = Store(root).histograms(EXPERIMENT, "r")
    assert [h["step"] for h in body["a"]] == [0, 5]
    assert body["a"][1]["edges"][0] == 0.0
    assert np.isnan(body["a"][1]["edges"][1])
    assert histograms_module.encode(body).count(b"null") == 1
    assert "Skipped 5 histogram rows" in caplog.text


def test_merge_steps_per_tag():
    table = histogram_table([0, 0, 0, None, None], ["a", "b", "a", "a", "a"],
                            counts=["[1,0]", "[2,0]", "[3,0]", "[4,0]", "[5,0]"])
    merged = merge_steps(table, "tag")
    assert list(zip(merged.column("step").to_pylist(), merged.column("tag").to_pylist(),
                    merged.column("counts").to_pylist())) == [
        (0, "a", "[3,0]"), (0, "b", "[2,0]"), (None, "a", "[4,0]"), (None, "a", "[5,0]")]


@pytest.mark.parametrize("text, expected", [
    ("[1,2,3]", [1, 2, 3]),
    ("[0.5,1]", [0.5, 1.0]),
    ("[]", []),
    ("[%d]" % 2**70, [float(2**70)]),
    ("[true]", None),
    ('["1"]', None),
    ("[[1]]", None),
    ("{}", None),
    ("1", None),
    ("[1,", None),
    (None, None),
])
def test_parse_numbers(text, expected):
    parsed = histograms_module.parse_numbers(text)
    if expected is None:
        assert parsed is None
    else:
        assert parsed.tolist() == expected
