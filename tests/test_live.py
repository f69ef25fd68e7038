"""Live streams (SSE) while the real logger writes, once per watcher (inotify and polling)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import threading
import time
from urllib.parse import urlencode

import httpx
import pyarrow as pa
import pytest
from httpx_sse import aconnect_sse

from expman_tornado.encoding import encode
from expman_tornado.live.channel import _non_finite_member, metrics_rows

from .conftest import assert_api_error
from .stores import new_run

EXPERIMENT = "live-exp"

#: Seconds any single event may take to arrive before a test fails.
EVENT_TIMEOUT = 10.0


@pytest.fixture(params=["inotify", "poll"], autouse=True)
def watcher(request) -> str:
    """Every test of this module runs once per watcher."""
    return request.param


@pytest.fixture
def server_config(watcher) -> dict:
    return {"watcher": watcher, "poll_interval": 0.1, "heartbeat_interval": 0.5}


@pytest.fixture
def store_root(tmp_path) -> str:
    root = str(tmp_path / "store")
    run = new_run(root, EXPERIMENT, "seed")
    run.log_vector({"loss": 1.0}, step=0)
    run.close()
    return root


class Writer:
    """The real logger writing one run in a background thread, a step every ``pause`` seconds."""

    def __init__(self, root: str, name: str, steps: int, pause: float = 0.002, start: int = 0):
        self.run = new_run(root, EXPERIMENT, name, flush_interval_ms=50, flush_interval_rows=20)
        self.steps = steps
        self.pause = pause
        self.start_step = start
        self.go = threading.Event()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._write, daemon=True)
        self.thread.start()

    def _write(self) -> None:
        self.go.wait(30)
        for step in range(self.start_step, self.start_step + self.steps):
            self.run.log_vector({"loss": 1.0 / (step + 1), "acc": step / 1000}, step=step)
            if step % 100 == 0:
                self.run.info("step %d" % step)
            time.sleep(self.pause)
        self.done.set()

    def close(self) -> None:
        self.go.set()
        self.thread.join(30)
        self.run.close()


def live_url(base_url: str, run: str) -> str:
    return "%s/api/experiments/%s/runs/%s/live" % (base_url.replace("localhost", "127.0.0.1"), EXPERIMENT, run)


class EventReader:
    """Reads a stream's events in a task, so waiting for one can time out safely.

    Timing out ``aiter_sse().__anext__()`` directly cancels httpx's read in a way
    that does not always end it; a queue between the two does.
    """

    def __init__(self, source):
        self.queue: asyncio.Queue = asyncio.Queue()
        self.task = asyncio.ensure_future(self._read(source))

    async def _read(self, source) -> None:
        try:
            async for event in source.aiter_sse():
                # httpx-sse reports a heartbeat comment after an event with an id as
                # an empty "message" event; browsers dispatch nothing for it.
                if event.event == "message" and not event.data:
                    continue
                await self.queue.put(event)
        except (httpx.HTTPError, asyncio.CancelledError):
            pass
        finally:
            await self.queue.put(None)

    async def next(self, timeout: float = EVENT_TIMEOUT):
        """Return the next event; raise StopAsyncIteration once the stream has ended."""
        event = await asyncio.wait_for(self.queue.get(), timeout)
        if event is None:
            self.queue.put_nowait(None)
            raise StopAsyncIteration
        return event


@contextlib.asynccontextmanager
async def stream(client: httpx.AsyncClient, url: str, headers: dict | None = None):
    async with aconnect_sse(client, "GET", url, headers=headers or {}) as source:
        assert source.response.headers["content-type"].startswith("text/event-stream")
        reader = EventReader(source)
        try:
            yield reader
        finally:
            reader.task.cancel()


async def next_event(events: EventReader, timeout: float = EVENT_TIMEOUT):
    return await events.next(timeout)


async def collect_steps(events, until_step: int, seen: list[int], ids: list[str]) -> None:
    """Read MetricsUpdated events until ``until_step`` has arrived."""
    while not seen or seen[-1] < until_step:
        event = await next_event(events)
        if event.event == "MetricsUpdated":
            data = json.loads(event.data)
            seen.extend(row["step"] for row in data["rows"])
            assert data["last_step"] == data["rows"][-1]["step"]
            ids.append(event.id)


@pytest.mark.gen_test(timeout=60)
async def test_stream_every_step_once(http_server, base_url, store_root):
    writer = Writer(store_root, "train", steps=600)
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            async with stream(client, live_url(base_url, "train")) as events:
                snapshot = await next_event(events)
                assert snapshot.event == "Snapshot"
                assert json.loads(snapshot.data)["status"] == "RUNNING"
                writer.go.set()
                seen: list[int] = []
                await collect_steps(events, 599, seen, [])
                writer.close()
                status = None
                while status is None:
                    event = await next_event(events)
                    if event.event == "StatusChanged":
                        status = json.loads(event.data)
                    elif event.event == "MetricsUpdated":
                        seen.extend(row["step"] for row in json.loads(event.data)["rows"])
    finally:
        writer.close()
    assert seen == list(range(600))
    assert status["status"] == "FINISHED"
    assert status["previous"] == "RUNNING"


@pytest.mark.gen_test(timeout=60)
async def test_compaction_adds_no_rows(http_server, base_url, store_root):
    writer = Writer(store_root, "compact", steps=200)
    writer.go.set()
    while not writer.done.is_set():
        await asyncio.sleep(0.05)
    async with httpx.AsyncClient(timeout=30) as client:
        async with stream(client, live_url(base_url, "compact") + "?since_step=-1") as events:
            assert (await next_event(events)).event == "Snapshot"
            seen: list[int] = []
            await collect_steps(events, 199, seen, [])
            writer.close()  # Segments become vectors.parquet now.
            await asyncio.sleep(1.0)
            rows = await client.get("%s/api/experiments/%s/runs/compact/metrics" % (
                base_url.replace("localhost", "127.0.0.1"), EXPERIMENT))
            late = []
            try:
                while True:
                    event = await next_event(events, timeout=1.0)
                    if event.event == "MetricsUpdated":
                        late.extend(row["step"] for row in json.loads(event.data)["rows"])
            except asyncio.TimeoutError:
                pass
    assert seen == list(range(200))
    assert late == []
    assert [row["step"] for row in rows.json()] == list(range(200))


@pytest.mark.gen_test(timeout=60)
async def test_resume_with_last_event_id(http_server, base_url, store_root):
    writer = Writer(store_root, "resume", steps=400, pause=0.005)
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            seen: list[int] = []
            ids: list[str] = []
            async with stream(client, live_url(base_url, "resume")) as events:
                assert (await next_event(events)).event == "Snapshot"
                writer.go.set()
                await collect_steps(events, 100, seen, ids)
            # Disconnected: the writer goes on. Reconnect from the last id seen.
            await asyncio.sleep(0.3)
            headers = {"Last-Event-ID": ids[-1]}
            async with stream(client, live_url(base_url, "resume"), headers) as events:
                assert (await next_event(events)).event == "Snapshot"
                await collect_steps(events, 250, seen, ids)
            # The same from the query, as a browser's new EventSource sends it.
            await asyncio.sleep(0.3)
            query = "?" + urlencode({"last_event_id": ids[-1]})
            async with stream(client, live_url(base_url, "resume") + query) as events:
                assert (await next_event(events)).event == "Snapshot"
                await collect_steps(events, 399, seen, ids)
    finally:
        writer.close()
    assert seen == list(range(400))


async def next_named(events: EventReader, names: tuple[str, ...]):
    """Return the next event with one of ``names``, skipping the others."""
    while True:
        event = await next_event(events)
        if event.event in names:
            return event


@pytest.mark.gen_test(timeout=60)
async def test_step_logged_twice_streams_merged(http_server, base_url, store_root):
    """A second log_vector call for a step already streamed sends that row again, merged.

    The usual case: a validation metric logged at the step of the training
    metrics, after they were flushed.
    """
    run = new_run(store_root, EXPERIMENT, "merged", flush_interval_ms=20)
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            async with stream(client, live_url(base_url, "merged") + "?since_step=-1") as events:
                assert (await next_event(events)).event == "Snapshot"
                for step in range(3):
                    run.log_vector({"loss": 1.0 / (step + 1)}, step=step)
                seen: list[int] = []
                ids: list[str] = []
                await collect_steps(events, 2, seen, ids)
                assert seen == [0, 1, 2]

                run.log_vector({"val": 0.5}, step=2)
                merged = await next_named(events, ("MetricsMerged", "MetricsUpdated"))
                assert merged.event == "MetricsMerged"
                rows = json.loads(merged.data)["rows"]
                assert [(row["step"], row["loss"], row["val"]) for row in rows] == [(2, 1.0 / 3, 0.5)]

                run.log_vector({"loss": 0.2}, step=3)
                updated = await next_named(events, ("MetricsMerged", "MetricsUpdated"))
                assert updated.event == "MetricsUpdated"
                assert [row["step"] for row in json.loads(updated.data)["rows"]] == [3]

            # A client that had only the rows before the merge gets the merged row, then the new one.
            async with stream(client, live_url(base_url, "merged"), {"Last-Event-ID": ids[-1]}) as events:
                assert (await next_event(events)).event == "Snapshot"
                first, second = await next_event(events), await next_event(events)
            assert (first.event, [row["val"] for row in json.loads(first.data)["rows"]]) == ("MetricsMerged", [0.5])
            assert (second.event, [row["step"] for row in json.loads(second.data)["rows"]]) == ("MetricsUpdated", [3])
    finally:
        run.close()


@pytest.mark.gen_test(timeout=60)
async def test_non_finite_values_named(http_server, base_url, store_root):
    """NaN and ±Inf, null in JSON rows, are named in the event's non_finite member, merged rows included."""
    run = new_run(store_root, EXPERIMENT, "diverging", flush_interval_ms=20)
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            async with stream(client, live_url(base_url, "diverging") + "?since_step=-1") as events:
                assert (await next_event(events)).event == "Snapshot"
                run.log_vector({"loss": 1.0, "acc": 0.5}, step=0)
                run.log_vector({"loss": float("nan"), "acc": float("inf")}, step=1)
                run.log_vector({"loss": float("-inf")}, step=2)
                rows, non_finite = [], {}
                while len(rows) < 3:
                    event = await next_named(events, ("MetricsUpdated",))
                    data = json.loads(event.data)
                    for name, cells in data.get("non_finite", {}).items():
                        non_finite.setdefault(name, []).extend([len(rows) + index, text] for index, text in cells)
                    rows.extend(data["rows"])
                assert [(row["step"], row["loss"]) for row in rows] == [(0, 1.0), (1, None), (2, None)]
                assert non_finite == {"loss": [[1, "NaN"], [2, "-Infinity"]], "acc": [[1, "Infinity"]]}

                run.log_vector({"val": float("nan")}, step=2)
                merged = await next_named(events, ("MetricsMerged",))
                data = json.loads(merged.data)
                assert [row["step"] for row in data["rows"]] == [2]
                assert data["non_finite"] == {"loss": [[0, "-Infinity"]], "val": [[0, "NaN"]]}
    finally:
        run.close()


def test_metrics_rows_of_event_with_non_finite():
    """The rows of an event are found also when a column named last_step has a NaN."""
    table = pa.table({"step": [0, 1], "last_step": [float("nan"), 1.0], "loss": [float("inf"), 2.0]})
    data = b'{"rows":' + encode(table, "json") + b',"last_step":1' + _non_finite_member(table) + b"}"
    assert json.loads(metrics_rows(data)) == json.loads(data)["rows"]
    plain = table.select(["step"])
    assert metrics_rows(b'{"rows":' + encode(plain, "json") + b',"last_step":1}') == encode(plain, "json")


@pytest.mark.gen_test(timeout=60)
async def test_merge_at_close_streams(http_server, base_url, store_root):
    """A value logged again at a step and then flushed only by close reaches a connected client."""
    # Ten rows fill one flush. The eleventh row waits for the close, which merges the segments.
    run = new_run(store_root, EXPERIMENT, "closing", flush_interval_ms=60_000, flush_interval_rows=10)
    closed = False
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            async with stream(client, live_url(base_url, "closing") + "?since_step=-1") as events:
                assert (await next_event(events)).event == "Snapshot"
                for step in range(10):
                    run.log_vector({"loss": 1.0 / (step + 1)}, step=step)
                await collect_steps(events, 9, [], [])
                run.log_vector({"val": 0.9}, step=9)
                run.close()
                closed = True
                merged, finished = [], False
                while not (merged and finished):
                    event = await next_named(events, ("MetricsMerged", "MetricsUpdated", "StatusChanged"))
                    assert event.event != "MetricsUpdated"
                    if event.event == "StatusChanged":
                        finished = True
                    else:
                        merged.extend(json.loads(event.data)["rows"])
        assert [(row["step"], row["val"]) for row in merged] == [(9, 0.9)]
    finally:
        if not closed:
            run.close()


@pytest.mark.gen_test(timeout=60)
async def test_since_step_starts_after_step(http_server, base_url, store_root):
    writer = Writer(store_root, "since", steps=50)
    writer.go.set()
    writer.close()
    await asyncio.sleep(0.3)
    async with httpx.AsyncClient(timeout=30) as client:
        async with stream(client, live_url(base_url, "since") + "?since_step=39") as events:
            assert (await next_event(events)).event == "Snapshot"
            rows = json.loads((await next_event(events)).data)["rows"]
    assert [row["step"] for row in rows] == list(range(40, 50))


@pytest.mark.gen_test(timeout=60)
async def test_log_lines_stream(http_server, base_url, store_root):
    writer = Writer(store_root, "logs", steps=350, pause=0.003)
    lines: list[str] = []
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            async with stream(client, live_url(base_url, "logs")) as events:
                assert (await next_event(events)).event == "Snapshot"
                writer.go.set()
                while len(lines) < 4:
                    event = await next_event(events)
                    if event.event == "LogMessage":
                        data = json.loads(event.data)
                        assert data["file"] == "run.log"
                        lines.extend(data["lines"])
    finally:
        writer.close()
    assert [line.rsplit(" ", 1)[-1] for line in lines[:4]] == ["0", "100", "200", "300"]


@pytest.mark.gen_test(timeout=60)
async def test_disconnect_frees_subscription(http_server, base_url, store_root, app):
    hub = app.hub
    async with httpx.AsyncClient(timeout=30) as client:
        for _ in range(3):
            async with stream(client, live_url(base_url, "seed")) as events:
                assert (await next_event(events)).event == "Snapshot"
                assert hub.subscribers == 1
        deadline = time.monotonic() + 5
        while hub.subscribers and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        server = (await client.get(base_url.replace("localhost", "127.0.0.1") + "/api/server")).json()
    assert hub.subscribers == 0
    assert server["subscribers"] == 0
    assert hub._channels == {}


@pytest.mark.gen_test(timeout=60)
async def test_heartbeat_comment_arrives(http_server, base_url, store_root):
    url = live_url(base_url, "seed")
    async with httpx.AsyncClient(timeout=30) as client:
        async with client.stream("GET", url) as response:
            text = b""
            async for chunk in response.aiter_bytes():
                text += chunk
                if b": heartbeat" in text:
                    break
    assert text.startswith(b"event: Snapshot")


@pytest.mark.gen_test(timeout=60)
async def test_store_stream_new_run(http_server, base_url, store_root, server_config):
    url = base_url.replace("localhost", "127.0.0.1") + "/api/live"
    async with httpx.AsyncClient(timeout=30) as client:
        async with stream(client, url) as events:
            await asyncio.sleep(0.3)  # Let the polling watcher take its first snapshot.
            run = new_run(store_root, "other-exp", "fresh")
            run.log_vector({"loss": 1.0}, step=0)
            names = set()
            while not {"ExperimentCreated", "RunCreated"} <= names:
                event = await next_event(events)
                names.add(event.event)
                if event.event == "RunCreated":
                    assert json.loads(event.data) == {"experiment": "other-exp", "run": "fresh"}
            run.close()
            while "StatusChanged" not in names:
                event = await next_event(events)
                names.add(event.event)
            assert json.loads(event.data)["status"] == "FINISHED"


@pytest.mark.gen_test(timeout=60)
async def test_deleted_run_ends_stream(http_server, base_url, store_root):
    async with httpx.AsyncClient(timeout=30) as client:
        async with stream(client, live_url(base_url, "seed")) as events:
            assert (await next_event(events)).event == "Snapshot"
            shutil.rmtree(os.path.join(store_root, EXPERIMENT, "seed"))
            names = []
            try:
                while True:
                    names.append((await next_event(events)).event)
            except StopAsyncIteration:
                pass
    assert names[-1] == "RunDeleted"


@pytest.mark.gen_test
async def test_unknown_run_is_json_404(http_client, base_url):
    response = await http_client.fetch(live_url(base_url, "nope"), raise_error=False)
    assert_api_error(response, 404)


@pytest.mark.gen_test
@pytest.mark.parametrize("value", ["garbage", "m-1.r0.c0", "m\uff15.r0.c0", ""])
async def test_bad_last_event_id_query_is_400(http_client, base_url, value):
    response = await http_client.fetch(live_url(base_url, "seed") + "?" + urlencode({"last_event_id": value}),
                                       raise_error=False)
    assert_api_error(response, 400)
    assert "last_event_id" in json.loads(response.body)["error"]["message"]


@pytest.mark.gen_test(timeout=60)
async def test_bad_last_event_id_header_ignored(http_server, base_url, store_root):
    """An id in the header that is not ours starts the stream at the run's end, as with no id."""
    async with httpx.AsyncClient(timeout=30) as client:
        async with stream(client, live_url(base_url, "seed"), {"Last-Event-ID": "garbage"}) as events:
            snapshot = await next_event(events)
    assert snapshot.event == "Snapshot"
    assert snapshot.id == "m1.r0.c0"


@pytest.mark.gen_test(timeout=60)
async def test_non_utf8_name_keeps_stream(http_server, base_url, store_root):
    writer = Writer(store_root, "bytes", steps=100, pause=0.005)
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            async with stream(client, live_url(base_url, "bytes")) as events:
                assert (await next_event(events)).event == "Snapshot"
                folder = os.path.join(store_root, EXPERIMENT, "bytes").encode()
                with open(folder + b"/caf\xe9.txt", "wb") as f:
                    f.write(b"not UTF-8 in its name\n")
                writer.go.set()
                seen: list[int] = []
                await collect_steps(events, 99, seen, [])
    finally:
        writer.close()
    assert seen == list(range(100))
