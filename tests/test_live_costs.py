"""What one live update costs: only the kinds of files that changed are read, a
new client's Snapshot reads no metric table, and pyinotify's rename records stay few."""

from __future__ import annotations

import asyncio
import os
import time

import pytest
from tornado.ioloop import IOLoop

from expman_tornado.live import watchers
from expman_tornado.live.channel import ANY_FILE, RunChannel, changed_kinds
from expman_tornado.live.hub import UNKNOWN, LiveHub
from expman_tornado.store import NotFound, Store

from .stores import make_run, new_run

#: Bound of every wait in this module.
MAX_SECONDS = 10.0


def test_changed_kinds_by_path():
    assert changed_kinds({"vectors-0003.arrow", "run.yaml"}) == {"vectors", "metadata"}
    assert changed_kinds({"vectors.parquet", "metrics.parquet"}) == {"vectors"}
    assert changed_kinds({"histograms-0000.arrow", "console.log"}) == {"histograms", "logs"}
    assert changed_kinds({"media.jsonl", "media/a-1.png", "artifacts/x/y.txt"}) == {"media", "artifacts"}
    assert changed_kinds({"system-0000.arrow", "system.parquet"}) == {"system"}
    assert changed_kinds({".run.lock", "run.yaml.tmp5484", "notes.txt"}) == set()
    assert changed_kinds({"", "run.log"}) == {ANY_FILE}


class Counting:
    """Wraps Store methods to count their calls."""

    def __init__(self, store: Store, monkeypatch, names: tuple[str, ...]):
        self.calls = {name: 0 for name in names}
        for name in names:
            original = getattr(store, name)

            def counted(*args, _name=name, _original=original, **kwargs):
                self.calls[_name] += 1
                return _original(*args, **kwargs)

            monkeypatch.setattr(store, name, counted)


@pytest.fixture
def live_run(tmp_path):
    root = str(tmp_path / "store")
    run = new_run(root, "e", "r", flush_interval_ms=20)
    for step in range(100):
        run.log_vector({"loss": 1.0 / (step + 1)}, step=step)
    deadline = time.monotonic() + MAX_SECONDS
    while Store(root).metrics_table("e", "r").num_rows < 100 and time.monotonic() < deadline:
        time.sleep(0.02)
    yield root, run
    run.close()


@pytest.mark.gen_test
async def test_read_changes_run_yaml_skips_tables(live_run, monkeypatch):
    root, _ = live_run
    store = Store(root)
    channel = RunChannel(store, "e", "r")
    await channel.open()
    counting = Counting(store, monkeypatch, ("metrics_table", "metrics_rows", "run", "media"))

    events, _ = channel._read_changes({"run.yaml"})
    assert counting.calls == {"metrics_table": 0, "metrics_rows": 0, "run": 0, "media": 0}
    assert events == []

    channel._read_changes({"vectors-0000.arrow"})
    assert counting.calls["metrics_rows"] == 1
    assert counting.calls["metrics_table"] == 0
    assert counting.calls["run"] == 0


@pytest.mark.gen_test
async def test_subscribe_snapshot_reads_no_table(live_run, monkeypatch):
    root, _ = live_run
    store = Store(root)
    channel = RunChannel(store, "e", "r")
    await channel.open()
    counting = Counting(store, monkeypatch, ("metrics_table", "metrics_rows", "run"))
    for _ in range(20):
        subscription = await channel.subscribe(None, None)
        chunks = await channel.take(subscription)
        assert chunks[0].startswith(b"event: Snapshot\n")
        assert b'"last_step":99' in chunks[0]
    assert counting.calls == {"metrics_table": 0, "metrics_rows": 0, "run": 0}


@pytest.mark.gen_test
async def test_inotify_rename_records_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(watchers, "MOVE_RECORD_SECONDS", 0.0)
    seen = []
    watcher = watchers.InotifyWatcher(str(tmp_path), lambda path, partial: seen.append(path))
    watcher.start()
    try:
        target = os.path.join(str(tmp_path), "run.yaml")
        for index in range(200):
            temporary = target + ".tmp"
            with open(temporary, "w") as f:
                f.write("status: RUNNING\nstep: %d\n" % index)
            os.replace(temporary, target)
        deadline = IOLoop.current().time() + MAX_SECONDS
        while seen.count(target) < 200 and IOLoop.current().time() < deadline:
            await asyncio.sleep(0.01)
        assert seen.count(target) >= 200
        system = watcher._notifier._sys_proc_fun
        assert system._mv == {}
        assert len(system._mv_cookie) < 200
    finally:
        watcher.stop()


@pytest.mark.gen_test
async def test_subscribe_run_concurrent_clients_open_once(live_run, monkeypatch):
    root, _ = live_run
    store = Store(root)
    hub = LiveHub(store)
    counting = Counting(store, monkeypatch, ("run",))
    subscriptions = await asyncio.gather(*(hub.subscribe_run("e", "r", None, None) for _ in range(8)))
    assert counting.calls["run"] == 1
    assert len({subscription.channel for subscription in subscriptions}) == 1


@pytest.mark.gen_test
async def test_subscribe_run_unknown_run_fails_every_waiting_client(live_run):
    root, _ = live_run
    hub = LiveHub(Store(root))
    results = await asyncio.gather(*(hub.subscribe_run("e", "missing", None, None) for _ in range(3)),
                                   return_exceptions=True)
    assert all(isinstance(result, NotFound) for result in results)
    assert hub.subscribers == 0


@pytest.mark.gen_test
async def test_hub_start_defers_statuses(tmp_path, monkeypatch):
    root = str(tmp_path / "store")
    for index in range(20):
        make_run(root, "e", "run-%02d" % index, status="FINISHED")
    store = Store(root)
    counting = Counting(store, monkeypatch, ("run_status", "run_statuses"))
    # A watcher that never reports, so the test alone decides when the hub looks.
    hub = LiveHub(store, watcher="poll", poll_interval=3600)
    published = []
    monkeypatch.setattr(hub, "_publish", lambda name, data: published.append((name, data)))
    await hub.start()
    try:
        assert hub.counts() == (1, 20)
        assert counting.calls["run_status"] == 0
        await asyncio.wait_for(hub._statuses_read, MAX_SECONDS)
        assert counting.calls["run_statuses"] == 1
        assert set(hub._runs.values()) == {"FINISHED"}

        # A new run costs one status read, its own; the others keep theirs.
        make_run(root, "e", "new", status="RUNNING")
        reads_before = counting.calls["run_status"]
        await hub._update_tree()
        assert counting.calls["run_status"] == reads_before + 1
        assert published == [("RunCreated", {"experiment": "e", "run": "new"})]

        make_run(root, "e", "new", status="FINISHED")
        await hub._update_status(("e", "new"))
        assert published[-1] == ("StatusChanged", {"experiment": "e", "run": "new",
                                                   "status": "FINISHED", "previous": "RUNNING"})
    finally:
        hub.stop()


@pytest.mark.gen_test
async def test_hub_unknown_status_not_published(tmp_path, monkeypatch):
    root = str(tmp_path / "store")
    make_run(root, "e", "r", status="RUNNING")
    hub = LiveHub(Store(root), watcher="poll", poll_interval=3600)
    published = []
    monkeypatch.setattr(hub, "_publish", lambda name, data: published.append((name, data)))
    await hub.start()
    try:
        hub._statuses_read.cancel()
        hub._runs[("e", "r")] = UNKNOWN  # As if the pass at start had not reached it yet.
        make_run(root, "e", "r", status="FINISHED")
        await hub._update_status(("e", "r"))
        assert published == []
        assert hub._runs[("e", "r")] == "FINISHED"
    finally:
        hub.stop()


def test_run_statuses_reads_only_run_yaml_without_summaries(tmp_path, monkeypatch):
    root = str(tmp_path / "store")
    for index in range(5):
        make_run(root, "e", "run-%d" % index, status="FAILED")
    store = Store(root)
    counting = Counting(store, monkeypatch, ("metrics_table", "_build_entries"))
    assert store.run_statuses("e") == {"run-%d" % index: "FAILED" for index in range(5)}
    assert counting.calls == {"metrics_table": 0, "_build_entries": 0}

    # With summaries built by a runs listing, the statuses come from them.
    store.runs("e")
    monkeypatch.setattr(store, "run_status", lambda *args: pytest.fail("run.yaml read again"))
    assert store.run_statuses("e")["run-0"] == "FAILED"
