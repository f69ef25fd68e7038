"""The REST API while the real logger writes a run, and across its switch to vectors.parquet.

A background thread logs a run with the expman logger (live Arrow segments,
then ``vectors.parquet`` at ``close()``), while the test requests the runs and
metrics routes in a loop bounded in count and time.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time

import pytest

from .conftest import strict_json
from .stores import new_run

EXPERIMENT = "live"

#: Bounds of every polling loop in this module.
MAX_REQUESTS = 2000
MAX_SECONDS = 30.0


@pytest.fixture
def store_root(tmp_path) -> str:
    root = tmp_path / "store"
    root.mkdir()
    return str(root)


class BackgroundRun:
    """One run logged by the real logger in a thread: ``values(step)`` at each step, then ``close()``.

    The thread sleeps 1 ms every ``pause_every`` steps, and 100 ms (several flush
    intervals) before each step in ``flush_before``, so that step starts a new flush.
    """

    def __init__(self, root: str, name: str, steps: int, values, pause_every: int = 2,
                 flush_before: tuple[int, ...] = (), close: bool = True):
        self.run = new_run(root, EXPERIMENT, name, flush_interval_ms=20, flush_interval_rows=50)
        self.folder = os.path.join(root, EXPERIMENT, name)
        self.steps = steps
        self.values = values
        self.pause_every = pause_every
        self.flush_before = flush_before
        self.close_at_end = close
        self.logged = threading.Event()
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._write, daemon=True)

    def start(self) -> "BackgroundRun":
        self.thread.start()
        return self

    def _write(self) -> None:
        try:
            for step in range(self.steps):
                if step in self.flush_before:
                    time.sleep(0.1)
                self.run.log_vector(self.values(step), step=step)
                if step % self.pause_every == 0:
                    time.sleep(0.001)
            self.logged.set()
            if self.close_at_end:
                self.run.close()
        except BaseException as exc:  # Reported by the test, which runs in another thread.
            self.error = exc
        finally:
            self.logged.set()
            self.done.set()

    def join(self) -> None:
        self.thread.join(MAX_SECONDS)
        assert not self.thread.is_alive(), "the logger thread did not finish in %.0f s" % MAX_SECONDS
        assert self.error is None, repr(self.error)


def loss_at(step: int) -> float:
    return 1.0 / (step + 1)


def metrics_url(base_url: str, run: str, query: str = "") -> str:
    return "%s/api/experiments/%s/runs/%s/metrics%s" % (base_url, EXPERIMENT, run, query)


async def fetch_rows(http_client, url: str) -> list[dict]:
    response = await http_client.fetch(url, raise_error=False)
    assert response.code == 200, (response.code, response.body[:300])
    return strict_json(response.body)


def assert_whole_rows(rows: list[dict]) -> None:
    """Check that rows are steps 0..n-1 once each, in order, with their logged values."""
    steps = [row["step"] for row in rows]
    assert steps == list(range(len(rows))), "rows lost, repeated or out of order"
    assert all(row["timestamp"] is not None for row in rows)
    assert all(row["loss"] == loss_at(row["step"]) for row in rows)


@pytest.mark.gen_test(timeout=60)
async def test_metrics_while_logger_writes(http_client, base_url, store_root):
    steps = 3000
    writer = BackgroundRun(store_root, "r", steps, lambda step: {"loss": loss_at(step), "acc": step / steps})
    writer.start()
    runs_url = "%s/api/experiments/%s/runs" % (base_url, EXPERIMENT)
    counts: list[int] = []
    polled: list[dict] = []  # Rows gathered with since_step, as a dashboard polls.
    deadline = time.monotonic() + MAX_SECONDS
    after_close = 0
    for _ in range(MAX_REQUESTS):
        if time.monotonic() > deadline or after_close > 3:
            break
        if writer.done.is_set():
            after_close += 1
        runs = await http_client.fetch(runs_url, raise_error=False)
        assert runs.code == 200, runs.body[:300]
        assert [run["id"] for run in strict_json(runs.body)] == ["r"]

        rows = await fetch_rows(http_client, metrics_url(base_url, "r"))
        assert_whole_rows(rows)
        assert not counts or len(rows) >= counts[-1], "the row count went down"
        counts.append(len(rows))

        since = polled[-1]["step"] if polled else -1
        polled.extend(await fetch_rows(http_client, metrics_url(base_url, "r", "?since_step=%d" % since)))
        assert_whole_rows(polled)
    writer.join()

    assert len(set(counts)) >= 3, "the loop saw too few states of the run: %s" % sorted(set(counts))
    final = await fetch_rows(http_client, metrics_url(base_url, "r"))
    assert_whole_rows(final)
    assert len(final) == steps
    assert sorted(os.listdir(writer.folder)).count("vectors.parquet") == 1
    assert not [name for name in os.listdir(writer.folder) if name.endswith(".arrow")]
    since = polled[-1]["step"] if polled else -1
    polled.extend(await fetch_rows(http_client, metrics_url(base_url, "r", "?since_step=%d" % since)))
    assert len(polled) == steps


def late_values(step: int) -> dict:
    """Return ``loss`` at every step, ``val`` every 50 steps from step 500, ``lr`` from step 1000."""
    values = {"loss": loss_at(step)}
    if step >= 500 and step % 50 == 0:
        values["val"] = step / 10
    if step >= 1000:
        values["lr"] = 0.5
    return values


def assert_late_columns(rows: list[dict]) -> None:
    for row in rows:
        expected = late_values(row["step"])
        assert row.get("val") == expected.get("val"), row
        assert row.get("lr") == expected.get("lr"), row


@pytest.mark.gen_test(timeout=60)
async def test_late_metric_columns(http_client, base_url, store_root):
    steps = 1500
    writer = BackgroundRun(store_root, "late", steps, late_values)
    writer.start()
    deadline = time.monotonic() + MAX_SECONDS
    for _ in range(MAX_REQUESTS):
        if writer.done.is_set() or time.monotonic() > deadline:
            break
        rows = await fetch_rows(http_client, metrics_url(base_url, "late"))
        assert_whole_rows(rows)
        assert_late_columns(rows)
    writer.join()

    rows = await fetch_rows(http_client, metrics_url(base_url, "late"))
    assert len(rows) == steps
    assert_late_columns(rows)
    runs = strict_json((await http_client.fetch("%s/api/experiments/%s/runs" % (base_url, EXPERIMENT))).body)
    assert runs[0]["metrics"]["val"] == 1450 / 10
    assert runs[0]["metrics"]["lr"] == 0.5


def mixed_values(step: int) -> dict:
    """Return values where the float metric ``note`` gets a string at step 150."""
    if step == 150:
        return {"loss": loss_at(step), "note": "diverged"}
    return {"loss": loss_at(step), "note": float(step)}


@pytest.mark.gen_test(timeout=60)
async def test_live_rows_match_closed_rows(http_client, base_url, store_root):
    """Rows served from the live segments equal the rows the logger writes at close."""
    steps = 300
    writer = BackgroundRun(store_root, "mixed", steps, mixed_values, pause_every=50,
                           flush_before=(150, 151), close=False)
    writer.start()
    assert writer.logged.wait(MAX_SECONDS)
    writer.run.log_vector({"extra": 1.0}, step=10)  # A second row for step 10, which the server merges.
    writer.join()

    deadline = time.monotonic() + MAX_SECONDS
    live = []
    while time.monotonic() < deadline:
        live = await fetch_rows(http_client, metrics_url(base_url, "mixed"))
        if len(live) == steps and live[10].get("extra") == 1.0:
            break
        await asyncio.sleep(0.05)
    assert len(live) == steps
    writer.run.close()
    closed = await fetch_rows(http_client, metrics_url(base_url, "mixed"))
    assert closed == live
    assert closed[150]["note"] is None  # The logger keeps the column's first type, float.
