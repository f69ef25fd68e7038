"""The runs listing cache and the chunked JSON rows: a change on disk shows in the next reply."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import orjson
import pyarrow as pa
import pytest

from expman_tornado.encoding import _frame, iter_json_rows
from expman_tornado.live import LiveHub
from expman_tornado.store import Store, StoreClosed
from expman_tornado.store.search import parse_query

from .conftest import strict_json
from .stores import make_run, metric_table, set_mtime, write_parquet, write_segment, write_yaml

NAN = float("nan")


def listing(store: Store, experiment: str = "e", metrics=None, query=None) -> list[dict]:
    """Return the runs as the route sends them, checked against the uncached listing."""
    body = store.runs_json(experiment, metrics, parse_query(query) if query else None)
    expected = store.runs(experiment, metrics, parse_query(query) if query else None)
    assert body == orjson.dumps(expected, option=orjson.OPT_NON_STR_KEYS)
    return orjson.loads(body)


def by_id(runs: list[dict]) -> dict:
    return {run["id"]: run for run in runs}


@pytest.fixture
def store_with_runs(tmp_path):
    root = str(tmp_path)
    for index, status in enumerate(["FINISHED", "FAILED", "RUNNING"]):
        folder = make_run(root, "e", "r%d" % index, status=status,
                          started_at="2026-01-0%dT00:00:00Z" % (index + 1), heartbeat_at=_now_text())
        write_yaml(os.path.join(folder, "config.yaml"), {"lr": 0.1 * (index + 1), "optimizer": "{'name': 'adam'}"})
        write_parquet(os.path.join(folder, "vectors.parquet"), metric_table([0, 1], loss=[2.0, 1.0 + index]))
    return root


def _now_text() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def test_listing_json_equals_uncached_runs(store_with_runs):
    store = Store(store_with_runs)
    runs = listing(store)
    assert [run["id"] for run in runs] == ["r2", "r1", "r0"]
    assert listing(store, metrics=["loss"])[0]["metrics"] == {"loss": 3.0}
    assert [run["id"] for run in listing(store, query="lr>0.15")] == ["r2", "r1"]
    assert listing(store) == runs


def test_listing_reads_unchanged_runs_once(store_with_runs, monkeypatch):
    store = Store(store_with_runs)
    summaries = []
    original = Store._run_summary
    monkeypatch.setattr(Store, "_run_summary",
                        lambda self, experiment, run: summaries.append(run) or original(self, experiment, run))
    store.runs_json("e")
    store.runs_json("e")
    store.runs_json("e", ["loss"])
    assert sorted(summaries) == ["r0", "r1", "r2"]


def test_listing_shows_changed_run_yaml(store_with_runs):
    store = Store(store_with_runs)
    assert by_id(listing(store))["r0"]["tags"] == []
    make_run(store_with_runs, "e", "r0", status="CRASHED", started_at="2026-01-01T00:00:00Z", tags=["edited"])
    run = by_id(listing(store))["r0"]
    assert run["status"] == "CRASHED"
    assert run["tags"] == ["edited"]


def test_listing_shows_changed_config(store_with_runs):
    store = Store(store_with_runs)
    assert by_id(listing(store))["r1"]["params"]["lr"] == 0.2
    write_yaml(os.path.join(store_with_runs, "e", "r1", "config.yaml"), {"lr": 0.5, "batch_size": 64})
    assert by_id(listing(store))["r1"]["params"] == {"lr": 0.5, "batch_size": 64}


def test_listing_shows_rewritten_parquet(store_with_runs):
    store = Store(store_with_runs)
    assert by_id(listing(store))["r0"]["metrics"] == {"loss": 1.0}
    path = os.path.join(store_with_runs, "e", "r0", "vectors.parquet")
    write_parquet(path, metric_table([0, 1, 2], loss=[2.0, 1.0, 0.25], acc=[0.1, 0.2, 0.3]))
    run = by_id(listing(store))["r0"]
    assert run["metrics"] == {"loss": 0.25, "acc": 0.3}
    assert run["best"]["loss"]["min_step"] == 2


def test_listing_shows_parquet_of_closed_run_without_one(tmp_path):
    root = str(tmp_path)
    folder = make_run(root, "e", "closed")
    store = Store(root)
    assert listing(store)[0]["metrics"] == {}
    write_parquet(os.path.join(folder, "metrics.parquet"), metric_table([0], loss=[4.0]))
    assert listing(store)[0]["metrics"] == {"loss": 4.0}


def test_listing_shows_new_segment_of_live_run(tmp_path):
    root = str(tmp_path)
    folder = make_run(root, "e", "live", status="RUNNING", heartbeat_at=_now_text())
    write_segment(os.path.join(folder, "vectors-0000.arrow"), metric_table([0, 1], loss=[2.0, 1.0]))
    store = Store(root)
    assert listing(store)[0]["metrics"] == {"loss": 1.0}
    write_segment(os.path.join(folder, "vectors-0001.arrow"), metric_table([2], loss=[0.5]))
    run = listing(store)[0]
    assert run["metrics"] == {"loss": 0.5}
    assert run["best"]["loss"]["min_step"] == 2


def test_listing_shows_new_and_deleted_runs(store_with_runs):
    store = Store(store_with_runs)
    assert len(listing(store)) == 3
    make_run(store_with_runs, "e", "r9", started_at="2026-02-01T00:00:00Z")
    assert [run["id"] for run in listing(store)][0] == "r9"
    os.rename(os.path.join(store_with_runs, "e", "r0"), os.path.join(store_with_runs, "e", ".r0-hidden"))
    assert sorted(run["id"] for run in listing(store)) == ["r1", "r2", "r9"]


def test_listing_marks_quiet_running_run_stale(tmp_path):
    """``stale`` changes with time alone, with no file changed."""
    root = str(tmp_path)
    folder = make_run(root, "e", "quiet", status="RUNNING", heartbeat_at="2026-01-01T00:00:00Z")
    past = time.time() - 3600
    set_mtime(os.path.join(folder, "run.yaml"), past)
    store = Store(root, stale_after=1e9)
    assert listing(store)[0]["stale"] is False
    store.stale_after = 60.0
    assert listing(store)[0]["stale"] is True


@pytest.mark.parametrize("small_rows", [0, 4096])
@pytest.mark.parametrize("rows_per_chunk", [1, 2, 3, 1000])
@pytest.mark.parametrize("rows", [0, 1, 4])
def test_json_rows_chunks_join_to_polars_json(rows, rows_per_chunk, small_rows, monkeypatch):
    monkeypatch.setattr("expman_tornado.encoding.SMALL_JSON_ROWS", small_rows)
    table = pa.table({
        "step": pa.array([0, None, 2, 3], pa.int64()),
        "timestamp": pa.array([0, None, 10**15, -10**12], pa.timestamp("us", tz="UTC")),
        "loss": [1.0, NAN, None, float("-inf")],
        "big": pa.array([2**60, None, -1, 0], pa.int64()),
        'odd "name"\n': [0.1, 0.2, 0.3, -5.0],
        "note": ["a\nb", 'é"\\', None, "\u2028x\r"],
        "half": pa.array([0.1, None, 1.0, 3.5], pa.float32()),
    }).slice(0, rows)
    expected = _frame(table).write_json().encode("utf-8")
    pieces = list(iter_json_rows(table, rows_per_chunk))
    assert b"".join(pieces) == expected
    assert all(isinstance(piece, bytes) for piece in pieces)


@pytest.mark.gen_test
async def test_metrics_json_sent_in_chunks(http_client, base_url, monkeypatch):
    monkeypatch.setattr("expman_tornado.handlers.metrics.JSON_CHUNK_ROWS", 7)
    monkeypatch.setattr("expman_tornado.encoding.SMALL_JSON_ROWS", 0)
    url = base_url + "/api/experiments/vision/runs/baseline/metrics"
    chunked = strict_json((await http_client.fetch(url + "?format=json")).body)
    columnar = strict_json((await http_client.fetch(url + "?format=columnar")).body)
    assert len(chunked) == len(columnar["step"]) > 7
    assert [row["step"] for row in chunked] == columnar["step"]
    assert [row["loss"] for row in chunked] == columnar["loss"]


# The change feed: while a watcher runs, noted changes replace the stat checks.


def _fed_store(root: str, **options) -> Store:
    """Return a store with the change feed active and every run's summary built under it."""
    store = Store(root, **options)
    store.set_change_feed(True)
    listing(store)
    return store


def _note(store: Store, *parts: str) -> None:
    store.note_change(os.path.join(store.root, *parts))


def test_feed_listing_makes_no_run_stat_calls(store_with_runs, monkeypatch):
    store = _fed_store(store_with_runs)
    called = []
    original = store.fs.stat_keys
    monkeypatch.setattr(store.fs, "stat_keys",
                        lambda paths, folder_fd=None: called.append(paths) or original(paths, folder_fd))
    store.runs_json("e")
    # Only the experiment folder is stat-ed, for its list of run folders.
    assert called == [(os.path.join(store.root, "e"),)]


def test_feed_without_note_keeps_summary(store_with_runs):
    """While the feed is active, a change that was not noted is not read (no stat check)."""
    store = _fed_store(store_with_runs)
    write_yaml(os.path.join(store_with_runs, "e", "r1", "config.yaml"), {"lr": 0.5})
    assert by_id(listing(store))["r1"]["params"]["lr"] == 0.2
    _note(store, "e", "r1", "config.yaml")
    assert by_id(listing(store))["r1"]["params"] == {"lr": 0.5}


def test_feed_shows_noted_run_yaml(store_with_runs):
    store = _fed_store(store_with_runs)
    make_run(store_with_runs, "e", "r0", status="CRASHED", started_at="2026-01-01T00:00:00Z", tags=["edited"])
    _note(store, "e", "r0", "run.yaml")
    run = by_id(listing(store))["r0"]
    assert run["status"] == "CRASHED"
    assert run["tags"] == ["edited"]


def test_feed_shows_noted_parquet(store_with_runs):
    store = _fed_store(store_with_runs)
    path = os.path.join(store_with_runs, "e", "r0", "vectors.parquet")
    write_parquet(path, metric_table([0, 1, 2], loss=[2.0, 1.0, 0.25]))
    _note(store, "e", "r0", "vectors.parquet")
    run = by_id(listing(store))["r0"]
    assert run["metrics"] == {"loss": 0.25}
    assert run["best"]["loss"]["min_step"] == 2


def test_feed_shows_new_and_deleted_runs(store_with_runs):
    store = _fed_store(store_with_runs)
    make_run(store_with_runs, "e", "r9", started_at="2026-02-01T00:00:00Z")
    _note(store, "e", "r9")
    assert [run["id"] for run in listing(store)][0] == "r9"
    os.rename(os.path.join(store_with_runs, "e", "r0"), os.path.join(store_with_runs, "e", ".r0-hidden"))
    _note(store, "e", "r0")
    _note(store, "e", ".r0-hidden")
    assert sorted(run["id"] for run in listing(store)) == ["r1", "r2", "r9"]


def test_feed_shows_new_segment_of_live_run(tmp_path):
    root = str(tmp_path)
    folder = make_run(root, "e", "live", status="RUNNING", heartbeat_at=_now_text())
    write_segment(os.path.join(folder, "vectors-0000.arrow"), metric_table([0, 1], loss=[2.0, 1.0]))
    store = _fed_store(root)
    assert listing(store)[0]["metrics"] == {"loss": 1.0}
    write_segment(os.path.join(folder, "vectors-0001.arrow"), metric_table([2], loss=[0.5]))
    _note(store, "e", "live", "vectors-0001.arrow")
    run = listing(store)[0]
    assert run["metrics"] == {"loss": 0.5}
    assert run["best"]["loss"]["min_step"] == 2


@pytest.mark.parametrize("noted", [(), ("e",)])
def test_feed_root_or_experiment_note_rereads_all(store_with_runs, noted):
    """The watcher notes the root when it lost events, and a folder that was replaced whole."""
    store = _fed_store(store_with_runs)
    for index, run in enumerate(["r0", "r1"]):
        write_yaml(os.path.join(store_with_runs, "e", run, "config.yaml"), {"lr": 5.0 + index})
    _note(store, *noted)
    runs = by_id(listing(store))
    assert runs["r0"]["params"] == {"lr": 5.0}
    assert runs["r1"]["params"] == {"lr": 6.0}


def test_feed_stat_checks_symlinked_run(store_with_runs):
    """The watcher reports a change under the folder a link resolves to, not under the link."""
    os.symlink(os.path.join(store_with_runs, "e", "r1"), os.path.join(store_with_runs, "e", "linked"))
    store = _fed_store(store_with_runs)
    write_yaml(os.path.join(store_with_runs, "e", "r1", "config.yaml"), {"lr": 0.5})
    _note(store, "e", "r1", "config.yaml")
    runs = by_id(listing(store))
    assert runs["r1"]["params"] == {"lr": 0.5}
    assert runs["linked"]["params"] == {"lr": 0.5}


def test_feed_checks_summaries_built_before_it(store_with_runs):
    """Changes made before the feed started were never noted, so the first check is by stat."""
    store = Store(store_with_runs)
    listing(store)
    write_yaml(os.path.join(store_with_runs, "e", "r1", "config.yaml"), {"lr": 0.5})
    store.set_change_feed(True)
    assert by_id(listing(store))["r1"]["params"] == {"lr": 0.5}


def test_feed_off_goes_back_to_stat_checks(store_with_runs):
    store = _fed_store(store_with_runs)
    store.set_change_feed(False)
    write_yaml(os.path.join(store_with_runs, "e", "r1", "config.yaml"), {"lr": 0.5})
    assert by_id(listing(store))["r1"]["params"] == {"lr": 0.5}


def test_feed_marks_quiet_running_run_stale(tmp_path):
    root = str(tmp_path)
    folder = make_run(root, "e", "quiet", status="RUNNING", heartbeat_at="2026-01-01T00:00:00Z")
    set_mtime(os.path.join(folder, "run.yaml"), time.time() - 3600)
    store = _fed_store(root, stale_after=1e9)
    assert listing(store)[0]["stale"] is False
    store.stale_after = 60.0
    assert listing(store)[0]["stale"] is True


def test_feed_ignores_paths_outside_store(store_with_runs, tmp_path_factory):
    store = _fed_store(store_with_runs)
    store.note_change(str(tmp_path_factory.mktemp("elsewhere")))
    store.note_change(store.root + "-sibling/e/r0/run.yaml")
    assert store._changed_at == {}


@pytest.mark.gen_test(timeout=30)
async def test_hub_drives_feed(store_with_runs):
    """The live hub turns the feed on with its inotify watcher and notes what the watcher reports."""
    store = Store(store_with_runs)
    hub = LiveHub(store, watcher="inotify")
    await hub.start()
    try:
        assert store._feed_since is not None
        listing(store)
        write_yaml(os.path.join(store_with_runs, "e", "r1", "config.yaml"), {"lr": 0.75})
        params = None
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            await asyncio.sleep(0.02)
            params = by_id(listing(store))["r1"]["params"]
            if params == {"lr": 0.75}:
                break
        assert params == {"lr": 0.75}
    finally:
        hub.stop()
    assert store._feed_since is None


# The summary index on disk


def _index_files(cache_dir) -> list[str]:
    return [name for name in os.listdir(cache_dir) if name.startswith("summaries-")]


def _count_summaries(monkeypatch) -> list[str]:
    built = []
    original = Store._run_summary
    monkeypatch.setattr(Store, "_run_summary",
                        lambda self, experiment, run: built.append(run) or original(self, experiment, run))
    return built


def test_index_reused_by_next_store(store_with_runs, tmp_path_factory, monkeypatch):
    cache_dir = str(tmp_path_factory.mktemp("cache"))
    first = listing(Store(store_with_runs, cache_dir=cache_dir))
    assert len(_index_files(cache_dir)) == 1
    built = _count_summaries(monkeypatch)
    second = listing(Store(store_with_runs, cache_dir=cache_dir))
    assert second == first
    # The RUNNING run is not in the index: its summary changes without a file change.
    assert built == ["r2"]


def test_index_entry_of_changed_file_reread(store_with_runs, tmp_path_factory, monkeypatch):
    cache_dir = str(tmp_path_factory.mktemp("cache"))
    listing(Store(store_with_runs, cache_dir=cache_dir))
    write_yaml(os.path.join(store_with_runs, "e", "r1", "config.yaml"), {"lr": 0.5})
    write_parquet(os.path.join(store_with_runs, "e", "r0", "vectors.parquet"), metric_table([0], loss=[9.0]))
    built = _count_summaries(monkeypatch)
    runs = by_id(listing(Store(store_with_runs, cache_dir=cache_dir)))
    assert sorted(built) == ["r0", "r1", "r2"]
    assert runs["r1"]["params"] == {"lr": 0.5}
    assert runs["r0"]["metrics"] == {"loss": 9.0}
    built.clear()
    assert by_id(listing(Store(store_with_runs, cache_dir=cache_dir)))["r1"]["params"] == {"lr": 0.5}
    assert built == ["r2"]


def test_index_forgets_deleted_run(store_with_runs, tmp_path_factory):
    cache_dir = str(tmp_path_factory.mktemp("cache"))
    listing(Store(store_with_runs, cache_dir=cache_dir))
    shutil.rmtree(os.path.join(store_with_runs, "e", "r0"))
    assert sorted(run["id"] for run in listing(Store(store_with_runs, cache_dir=cache_dir))) == ["r1", "r2"]
    with open(os.path.join(cache_dir, _index_files(cache_dir)[0]), "rb") as f:
        assert sorted(orjson.loads(f.read())["runs"]) == ["e/r1"]


@pytest.mark.parametrize("content", [b"{not json", b"[]", b'{"format": "something else"}', None])
def test_index_corrupt_or_foreign_file_ignored(store_with_runs, tmp_path_factory, caplog, content):
    cache_dir = str(tmp_path_factory.mktemp("cache"))
    expected = listing(Store(store_with_runs, cache_dir=cache_dir))
    path = os.path.join(cache_dir, _index_files(cache_dir)[0])
    if content is None:
        # A whole index, but of another store root.
        with open(path, "rb") as f:
            document = orjson.loads(f.read())
        content = orjson.dumps({**document, "root": "/another/store"})
    with open(path, "wb") as f:
        f.write(content)
    with caplog.at_level(logging.WARNING, logger="expman_tornado.store.summary_index"):
        assert listing(Store(store_with_runs, cache_dir=cache_dir)) == expected
    assert len([r for r in caplog.records if "Ignoring the summary index" in r.getMessage()]) == 1
    with open(path, "rb") as f:
        rewritten = orjson.loads(f.read())
    assert rewritten["root"] == os.path.realpath(store_with_runs)
    assert sorted(rewritten["runs"]) == ["e/r0", "e/r1"]


def _tree_state(root: str) -> dict:
    state = {}
    for folder, folders, files in os.walk(root):
        for name in folders + files:
            path = os.path.join(folder, name)
            info = os.lstat(path)
            state[path] = (info.st_ino, info.st_size, info.st_mtime_ns)
    state[root] = os.stat(root).st_mtime_ns
    return state


def test_index_never_written_into_store(store_with_runs, tmp_path_factory, caplog):
    before = _tree_state(store_with_runs)
    outside = str(tmp_path_factory.mktemp("cache"))
    listing(Store(store_with_runs, cache_dir=outside))
    listing(Store(store_with_runs, cache_dir=outside))
    inside = os.path.join(store_with_runs, "cache")
    with caplog.at_level(logging.WARNING, logger="expman_tornado.store.summary_index"):
        listing(Store(store_with_runs, cache_dir=inside))
    assert _tree_state(store_with_runs) == before
    assert any("inside the store" in record.getMessage() for record in caplog.records)


def test_index_disabled_by_empty_cache_dir(store_with_runs):
    store = Store(store_with_runs, cache_dir="")
    listing(store)
    assert store._index is None


def test_index_saved_on_executor(store_with_runs, tmp_path_factory):
    cache_dir = str(tmp_path_factory.mktemp("cache"))
    with ThreadPoolExecutor(2) as executor:
        listing(Store(store_with_runs, cache_dir=cache_dir, executor=executor))
    assert len(_index_files(cache_dir)) == 1
    assert [name for name in os.listdir(cache_dir) if name.endswith(".tmp")] == []


def test_read_summaries_serves_first_listing(store_with_runs, monkeypatch):
    """After read_summaries, a first listing parses no file and equals one read without it."""
    make_run(store_with_runs, "other", "lone")
    expected = listing(Store(store_with_runs))
    store = Store(store_with_runs)
    assert store.read_summaries() == 4

    def no_parse(*args, **kwargs):
        raise AssertionError("a file was parsed again")

    monkeypatch.setattr("expman_tornado.store.store.parse_yaml_mapping", no_parse)
    monkeypatch.setattr("expman_tornado.store.tables.read_parquet", no_parse)
    assert listing(store) == expected
    assert [run["id"] for run in listing(store, "other")] == ["lone"]


def test_read_summaries_skips_experiment_deleted_meanwhile(store_with_runs, monkeypatch):
    store = Store(store_with_runs)
    make_run(store_with_runs, "gone", "r")
    listed = store.experiment_ids

    def listed_then_deleted() -> list[str]:
        names = listed()
        shutil.rmtree(os.path.join(store_with_runs, "gone"))
        return names

    monkeypatch.setattr(store, "experiment_ids", listed_then_deleted)
    assert store.read_summaries() == 3


def slow_builds(store: Store, monkeypatch, seconds: float) -> list[tuple[str, str]]:
    """Make each summary build of ``store`` take ``seconds`` longer; return the (experiment, run) built, in order."""
    built: list[tuple[str, str]] = []
    build = store._build_summary_entry

    def slow(experiment, run, *args):
        time.sleep(seconds)
        built.append((experiment, run))
        return build(experiment, run, *args)

    monkeypatch.setattr(store, "_build_summary_entry", slow)
    return built


def test_close_stops_summary_pass(tmp_path, monkeypatch):
    for index in range(40):
        make_run(str(tmp_path), "e", "r%02d" % index)
    store = Store(str(tmp_path))
    built = slow_builds(store, monkeypatch, 0.02)
    outcome: list = []

    def listing_thread() -> None:
        try:
            store.runs_json("e")
        except StoreClosed as exc:
            outcome.append(exc)

    thread = threading.Thread(target=listing_thread)
    thread.start()
    while len(built) < 3:
        time.sleep(0.005)
    store.close()
    thread.join(5)
    assert not thread.is_alive()
    assert isinstance(outcome[0], StoreClosed)
    assert len(built) < 40


def test_background_read_waits_for_listing(tmp_path, monkeypatch):
    """While a listing builds summaries, the background read builds none (but the one it had begun)."""
    for index in range(20):
        make_run(str(tmp_path), "a", "r%02d" % index)
    for index in range(5):
        make_run(str(tmp_path), "b", "r%02d" % index)
    store = Store(str(tmp_path))
    built = slow_builds(store, monkeypatch, 0.02)
    background = threading.Thread(target=store.read_summaries)
    background.start()
    while len(built) < 2:
        time.sleep(0.005)
    assert len(listing(store, "b")) == 5
    background.join(10)
    order = [experiment for experiment, _ in built]
    first, last = order.index("b"), len(order) - 1 - order[::-1].index("b")
    assert order[first:last + 1].count("a") <= 1
    assert order.count("a") == 20
