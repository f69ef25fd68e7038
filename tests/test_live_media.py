"""HistogramsUpdated and MediaAdded events while the real logger writes, once per watcher."""

from __future__ import annotations

import asyncio
import json
import os

import httpx
import numpy as np
import pytest

from expman_tornado.live.events import Position

from .stores import make_run, metric_table, new_run, write_parquet, write_text
from .test_live import stream

EXPERIMENT = "live-media"


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


def live_url(base_url: str, run: str, query: str = "") -> str:
    return "%s/api/experiments/%s/runs/%s/live%s" % (
        base_url.replace("localhost", "127.0.0.1"), EXPERIMENT, run, query)


async def wait_for(events, name: str, count: int = 1) -> list:
    """Return the next ``count`` events called ``name``, skipping the others."""
    found = []
    while len(found) < count:
        event = await events.next()
        if event.event == name:
            found.append(event)
    return found


def image(value: int) -> np.ndarray:
    return np.full((4, 4, 3), value, dtype=np.uint8)


@pytest.mark.gen_test(timeout=60)
async def test_histogram_and_image_arrive(http_server, base_url, store_root):
    run = new_run(store_root, EXPERIMENT, "train", flush_interval_ms=50)
    try:
        run.log_vector({"loss": 1.0}, step=0)
        await asyncio.sleep(0.3)
        async with httpx.AsyncClient(timeout=30) as client:
            async with stream(client, live_url(base_url, "train")) as events:
                assert (await events.next()).event == "Snapshot"

                run.log_histogram("weights", np.arange(100.0), step=3)
                [event] = await wait_for(events, "HistogramsUpdated")
                assert json.loads(event.data) == {"tags": ["weights"], "last_step": 3}
                assert Position.parse(event.id).histograms == 1

                run.log_histogram("bias", edges=[0.0, 1.0], counts=[5], step=4)
                [event] = await wait_for(events, "HistogramsUpdated")
                assert json.loads(event.data) == {"tags": ["bias"], "last_step": 4}
                assert Position.parse(event.id).histograms == 2

                run.log_image("samples", image(7), step=5)
                [event] = await wait_for(events, "MediaAdded")
                entry = json.loads(event.data)
                assert list(entry) == ["tag", "step", "file", "url", "mime", "bytes", "logged_at"]
                assert (entry["tag"], entry["step"], entry["mime"]) == ("samples", 5, "image/png")
                assert entry["url"] == "/api/experiments/%s/runs/train/files/%s" % (EXPERIMENT, entry["file"])
                assert Position.parse(event.id).media == 1

                listed = (await client.get(base_url.replace("localhost", "127.0.0.1") + "/api/experiments/%s/runs/train/media" % EXPERIMENT)).json()
                assert listed == [entry]
    finally:
        run.close()


@pytest.mark.gen_test(timeout=60)
async def test_resume_replays_missed_media(http_server, base_url, store_root):
    run = new_run(store_root, EXPERIMENT, "resume", flush_interval_ms=50)
    try:
        run.log_vector({"loss": 1.0}, step=0)
        async with httpx.AsyncClient(timeout=30) as client:
            async with stream(client, live_url(base_url, "resume")) as events:
                assert (await events.next()).event == "Snapshot"
                run.log_image("samples", image(1), step=1)
                [first] = await wait_for(events, "MediaAdded")

            # Away: two images and a histogram are logged.
            run.log_image("samples", image(2), step=2)
            run.log_image("samples", image(3), step=3)
            run.log_histogram("weights", np.arange(10.0), step=3)
            await asyncio.sleep(1.0)

            async with stream(client, live_url(base_url, "resume"), {"Last-Event-ID": first.id}) as events:
                assert (await events.next()).event == "Snapshot"
                missed = await wait_for(events, "MediaAdded", 2)
                assert [json.loads(event.data)["step"] for event in missed] == [2, 3]
                assert [Position.parse(event.id).media for event in missed] == [2, 3]

            # An id from before histograms and media existed replays them all.
            async with stream(client, live_url(base_url, "resume"), {"Last-Event-ID": "m1.r0.c0"}) as events:
                assert (await events.next()).event == "Snapshot"
                [histograms] = await wait_for(events, "HistogramsUpdated")
                assert json.loads(histograms.data) == {"tags": ["weights"], "last_step": 3}
                replayed = await wait_for(events, "MediaAdded", 3)
                assert [json.loads(event.data)["step"] for event in replayed] == [1, 2, 3]
    finally:
        run.close()


@pytest.mark.gen_test(timeout=60)
async def test_since_step_replays_later_media(http_server, base_url, store_root):
    run = new_run(store_root, EXPERIMENT, "since", flush_interval_ms=50)
    for step in range(4):
        run.log_vector({"loss": 1.0}, step=step)
        run.log_image("samples", image(step), step=step)
    run.log_histogram("weights", np.arange(10.0), step=1)
    run.log_histogram("weights", np.arange(10.0), step=3)
    run.close()
    async with httpx.AsyncClient(timeout=30) as client:
        async with stream(client, live_url(base_url, "since", "?since_step=1")) as events:
            assert (await events.next()).event == "Snapshot"
            [histograms] = await wait_for(events, "HistogramsUpdated")
            media = await wait_for(events, "MediaAdded", 2)
    assert json.loads(histograms.data) == {"tags": ["weights"], "last_step": 3}
    assert [json.loads(event.data)["step"] for event in media] == [2, 3]


def test_position_ids_compatible():
    assert Position.parse("m5.r10.c0") == Position(5, {"run.log": 10, "console.log": 0})
    assert Position(5, {"run.log": 10, "console.log": 0}).event_id == "m5.r10.c0"
    position = Position(5, {"run.log": 10}, histograms=3, media=2)
    assert position.event_id == "m5.r10.c0.h3.i2"
    assert Position.parse(position.event_id) == Position(5, {"run.log": 10, "console.log": 0}, 3, 2)
    assert Position.parse("m5.r10.c0.x9") == Position(5, {"run.log": 10, "console.log": 0})


def media_line(step: int) -> str:
    return json.dumps({"file": "media/s-%d.png" % step, "tag": "s", "step": step, "bytes": 1,
                       "logged_at": "2026-01-05T09:00:00Z"}) + "\n"


@pytest.mark.gen_test(timeout=60)
async def test_shorter_files_then_growth(http_server, base_url, store_root):
    folder = make_run(store_root, EXPERIMENT, "rewritten", status="RUNNING")
    media = os.path.join(folder, "media.jsonl")
    vectors = os.path.join(folder, "vectors.parquet")
    write_text(media, "".join(media_line(step) for step in range(3)))
    write_parquet(vectors, metric_table(list(range(5)), loss=[1.0] * 5))
    async with httpx.AsyncClient(timeout=30) as client:
        async with stream(client, live_url(base_url, "rewritten")) as events:
            assert (await events.next()).event == "Snapshot"

            # Both files are replaced by shorter ones: no event, but the position follows.
            write_text(media + ".new", media_line(0))
            os.replace(media + ".new", media)
            write_parquet(vectors + ".new", metric_table(list(range(3)), loss=[1.0] * 3))
            os.replace(vectors + ".new", vectors)
            await asyncio.sleep(0.5)

            with open(media, "a") as f:
                f.write(media_line(1) + media_line(2))
            [first, second] = await wait_for(events, "MediaAdded", 2)
            assert [json.loads(first.data)["step"], json.loads(second.data)["step"]] == [1, 2]

            write_parquet(vectors + ".new", metric_table(list(range(6)), loss=[1.0] * 6))
            os.replace(vectors + ".new", vectors)
            [metrics] = await wait_for(events, "MetricsUpdated")
            assert [row["step"] for row in json.loads(metrics.data)["rows"]] == [3, 4, 5]
