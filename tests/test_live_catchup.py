"""Catch-up of a run's stream, and system metric rows as SystemUpdated events.

Each event id counts what the client has after that event, so a client cut off
halfway through resumes with no gap and no repeat."""

from __future__ import annotations

import os
import time

import orjson
import pyarrow as pa
import pytest

from expman_tornado.live.channel import RunChannel, _changed_rows
from expman_tornado.live.events import Position, parse_event
from expman_tornado.store import Store

from .stores import make_run, metric_table, new_run, stream_bytes, write_text

#: Bound of every wait in this module.
MAX_SECONDS = 10.0


def events_of(chunks: list[bytes]) -> list[tuple[str, str, dict]]:
    return [(name, event_id, orjson.loads(data)) for name, event_id, data in map(parse_event, chunks)]


async def initial_events(channel: RunChannel, resume: Position | None, since_step: int | None = None) -> list:
    subscription = await channel.subscribe(resume, since_step)
    events = events_of(await channel.take(subscription))
    channel.subscriptions.discard(subscription)
    return events


def delivered(events: list) -> tuple[list[int], list[str]]:
    """Return the metric steps and run.log lines carried by some events."""
    steps, lines = [], []
    for name, _, data in events:
        if name == "MetricsUpdated":
            steps.extend(row["step"] for row in data["rows"])
        elif name == "LogMessage" and data["file"] == "run.log":
            lines.extend(data["lines"])
    return steps, lines


@pytest.fixture
def logged_run(tmp_path):
    root = str(tmp_path / "store")
    run = new_run(root, "e", "r", flush_interval_ms=20)
    for step in range(30):
        run.log_vector({"loss": 1.0 / (step + 1)}, step=step)
        if step % 10 == 0:
            run.info("line at step %d" % step)
    run.close()
    return root


@pytest.mark.gen_test
async def test_catch_up_cut_after_any_event_resumes_exactly(logged_run):
    channel = RunChannel(Store(logged_run), "e", "r")
    await channel.open()
    start = Position(10, {"run.log": 0, "console.log": 0})
    events = await initial_events(channel, start)
    assert [name for name, _, _ in events][:2] == ["Snapshot", "MetricsUpdated"]
    assert "LogMessage" in [name for name, _, _ in events]
    every_step, every_line = delivered(events)
    assert every_step == list(range(10, 30))
    assert len(every_line) == 3

    for cut in range(len(events)):
        # The client had events[0..cut] when the connection broke.
        resumed = await initial_events(channel, Position.parse(events[cut][1]))
        steps, lines = delivered(events[1:cut + 1] + resumed[1:])
        assert steps == every_step, "cut after event %d" % cut
        assert lines == every_line, "cut after event %d" % cut


@pytest.mark.gen_test
async def test_catch_up_since_step_snapshot_id_resumes_exactly(logged_run):
    channel = RunChannel(Store(logged_run), "e", "r")
    await channel.open()
    events = await initial_events(channel, None, since_step=19)
    assert delivered(events)[0] == list(range(20, 30))
    # Cut right after the Snapshot: its id must not claim the rows after step 19.
    resumed = await initial_events(channel, Position.parse(events[0][1]))
    assert delivered(resumed)[0] == list(range(20, 30))


def system_rows(first: int, count: int):
    steps = list(range(first, first + count))
    return metric_table(steps, **{"cpu.util_pct": [float(step) for step in steps]})


@pytest.mark.gen_test
async def test_system_rows_stream_and_resume(tmp_path):
    root = str(tmp_path / "store")
    folder = make_run(root, "e", "r", "RUNNING")
    data, ends = stream_bytes(system_rows(0, 3), system_rows(3, 2))
    path = os.path.join(folder, "system-0000.arrow")
    write_text(path, data[: ends[0]])
    channel = RunChannel(Store(root), "e", "r")
    await channel.open()
    assert channel.position.system == 3

    with open(path, "ab") as f:
        f.write(data[ends[0]:])
    deadline = time.monotonic() + MAX_SECONDS
    events = []
    while not events and time.monotonic() < deadline:
        events, end = channel._read_changes({"system-0000.arrow"})
    [(chunk, position, _)] = events
    name, event_id, body = parse_event(chunk)
    assert name == "SystemUpdated"
    assert [row["step"] for row in orjson.loads(body)["rows"]] == [3, 4]
    assert Position.parse(event_id).system == 5
    channel.position = end

    resumed = await initial_events(channel, Position(0, {}, system=3))
    [system] = [data for name, _, data in resumed if name == "SystemUpdated"]
    assert [row["cpu.util_pct"] for row in system["rows"]] == [3.0, 4.0]


def merged_values(events: list) -> dict[int, float]:
    """Return the ``val`` of each step that some events carry, later events winning."""
    values = {}
    for name, _, data in events:
        if name in ("MetricsUpdated", "MetricsMerged"):
            values.update({row["step"]: row.get("val") for row in data["rows"]})
    return values


@pytest.mark.gen_test
async def test_catch_up_sends_merged_rows(tmp_path):
    """Values logged again at steps a client has come back as MetricsMerged, exactly once per cut."""
    root = str(tmp_path / "store")
    run = new_run(root, "e", "r", flush_interval_ms=20)
    store = Store(root)
    try:
        for step in range(5):
            run.log_vector({"loss": 1.0 / (step + 1)}, step=step)
        deadline = time.monotonic() + MAX_SECONDS
        while store.metrics_rows("e", "r").table.num_rows < 5 and time.monotonic() < deadline:
            time.sleep(0.02)
        before = Position(5, {"run.log": 0, "console.log": 0})
        run.log_vector({"val": 1.0}, step=1)
        run.log_vector({"val": 3.0}, step=3)
        run.log_vector({"loss": 0.1, "val": 5.0}, step=5)
        while len(store.metrics_rows("e", "r").merged_into) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)

        channel = RunChannel(store, "e", "r")
        await channel.open()
        assert (channel.position.rows, channel.position.merged) == (6, 2)
        events = await initial_events(channel, before)
        assert [name for name, _, _ in events] == ["Snapshot", "MetricsMerged", "MetricsUpdated"]
        assert merged_values(events) == {1: 1.0, 3: 3.0, 5: 5.0}
        for cut in range(len(events)):
            resumed = await initial_events(channel, Position.parse(events[cut][1]))
            assert merged_values(events[1:cut + 1] + resumed[1:]) == {1: 1.0, 3: 3.0, 5: 5.0}
            assert delivered(resumed)[0] == ([5] if cut < 2 else [])
    finally:
        run.close()


def test_changed_rows_across_types():
    """Rows compare by value across a change of type, and a column only one table has counts where it has values."""
    before = pa.table({"step": [0, 1, 2], "loss": pa.array([1.0, float("nan"), 3.0], pa.float32())})
    after = pa.table({"step": [0, 1, 2], "loss": [1.0, float("nan"), 3.5], "val": [None, 0.5, None]})
    assert _changed_rows(before, after, 3).tolist() == [1, 2]
    assert _changed_rows(before, before, 3).tolist() == []
    assert _changed_rows(after, after.select(["step", "loss"]), 2).tolist() == [1]
