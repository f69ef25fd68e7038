"""A client that stops reading does not delay the others, and once it reads
again it gets every row once, in order, from a catch-up of the files."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time

import httpx
import pytest

from .stores import new_run
from .test_live import EXPERIMENT, collect_steps, live_url, stream

#: Steps the logger writes, each with a text metric of this many characters,
#: so that the events outgrow the socket buffers of a client that does not read.
STEPS = 600
TEXT_SIZE = 20000


@pytest.fixture
def server_config() -> dict:
    return {"watcher": "inotify", "heartbeat_interval": 0.5}


@pytest.fixture
def store_root(tmp_path) -> str:
    root = tmp_path / "store"
    root.mkdir()
    return str(root)


def write_run(root: str, started: threading.Event) -> threading.Thread:
    run = new_run(root, EXPERIMENT, "big", flush_interval_ms=20, flush_interval_rows=10)
    run.log_vector({"loss": 1.0, "text": "start"}, step=0)

    def write() -> None:
        started.wait(30)
        for step in range(1, STEPS):
            run.log_vector({"loss": 1.0 / (step + 1), "text": "x" * TEXT_SIZE}, step=step)
            time.sleep(0.001)
        run.close()

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return thread


def open_silent_client(url: str) -> socket.socket:
    """Send the request of a stream, and then read nothing (a small receive buffer)."""
    host_port, _, path = url.removeprefix("http://").partition("/")
    host, _, port = host_port.partition(":")
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.connect((host, int(port)))
    client.sendall(("GET /%s HTTP/1.1\r\nHost: %s\r\n\r\n" % (path, host_port)).encode())
    return client


def dechunk(data: bytes) -> bytes:
    """Return the body of a raw chunked HTTP reply, as far as its chunks are complete."""
    body, at = bytearray(), data.index(b"\r\n\r\n") + 4
    while True:
        line_end = data.find(b"\r\n", at)
        if line_end < 0:
            return bytes(body)
        size = int(data[at:line_end], 16)
        if line_end + 2 + size + 2 > len(data):
            return bytes(body)
        body += data[line_end + 2:line_end + 2 + size]
        at = line_end + 2 + size + 2


def read_steps(client: socket.socket, last_step: int, deadline: float) -> list[int]:
    """Read a raw SSE reply until the event of ``last_step``; return the metric steps in order."""
    client.settimeout(1.0)
    end_marker = b'"last_step":%d}' % last_step
    data = bytearray()
    while time.monotonic() < deadline and end_marker not in data[-(1 << 16):]:
        try:
            received = client.recv(1 << 20)
        except socket.timeout:
            continue
        if not received:
            break
        data += received
    steps: list[int] = []
    for block in dechunk(bytes(data)).split(b"\n\n")[:-1]:
        if b"event: MetricsUpdated" in block:
            body = block.split(b"data: ", 1)[1]
            steps.extend(row["step"] for row in json.loads(body)["rows"])
    return steps


@pytest.mark.gen_test(timeout=90)
async def test_slow_client_delays_no_other(http_server, base_url, store_root, app):
    started = threading.Event()
    writer = write_run(store_root, started)
    url = live_url(base_url, "big") + "?since_step=-1"
    silent = open_silent_client(url)
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            async with stream(client, url) as events:
                assert (await events.next()).event == "Snapshot"
                started.set()
                seen: list[int] = []
                await asyncio.wait_for(collect_steps(events, STEPS - 1, seen, []), 60)
        assert seen == list(range(STEPS))
        writer.join(30)

        # The silent client is far behind: its bytes are not all queued in the server.
        deadline = time.monotonic() + 10
        while app.hub.subscribers > 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        [subscription] = [s for channel in app.hub._channels.values() for s in channel.subscriptions]
        assert subscription.next_seq < subscription.channel.next_seq

        steps = await asyncio.get_running_loop().run_in_executor(
            None, read_steps, silent, STEPS - 1, time.monotonic() + 30)
        assert steps == list(range(STEPS))
    finally:
        silent.close()
