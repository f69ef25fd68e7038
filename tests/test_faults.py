"""Faults while serving: runs deleted mid-stream, files turned into folders, FIFOs and devices,
files the server may not read, megabyte log lines, and garbage bytes in YAML and parquet.

Every case checks that the server answers (no hang, no 5xx, JSON errors) and
that live streams go on or end cleanly.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import stat
import subprocess
import sys
import threading
import time

import httpx
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from expman_tornado.app import ExpmanTornado

from .conftest import assert_api_error, strict_json
from .server_thread import ServerThread
from .stores import (
    make_run,
    metric_table,
    new_run,
    parquet_bytes,
    stream_bytes,
    write_real_store,
    write_text,
)
from .test_live import EventReader, stream

RUN = "/api/experiments/vision/runs/baseline"

#: Routes of one run that answer at once (the streams are checked separately).
RUN_ROUTES = ["", "/metrics", "/metrics?format=columnar", "/metrics?format=arrow", "/system",
              "/artifacts", "/logs/run.log", "/logs/run.log?tail=3", "/logs/console.log",
              "/metadata", "/config", "/artifacts/content?path=notes.txt", "/artifacts/notes.txt",
              "/files/run.yaml", "/files/vectors.parquet", "/histograms", "/media"]
STORE_ROUTES = ["/api/experiments", "/api/experiments/vision", "/api/experiments/vision/runs",
                "/api/stats", "/api/experiments/vision/metadata"]


@pytest.fixture
def store_root(tmp_path) -> str:
    root = str(tmp_path / "store")
    write_real_store(root)
    return root


@pytest.fixture
def server_config() -> dict:
    return {"heartbeat_interval": 0.5}


def url_of(base_url: str, path: str) -> str:
    return base_url.replace("localhost", "127.0.0.1") + path


def check_answer(response, path: str) -> None:
    """A reply is a success, or the API's JSON error with a 4xx status."""
    assert response.code < 500, (path, response.code, response.body[:300])
    if response.code >= 400:
        assert_api_error(response, response.code)


async def check_all_routes(http_client, base_url: str, run: str = RUN) -> dict[str, int]:
    statuses = {}
    for path in STORE_ROUTES + [run + route for route in RUN_ROUTES]:
        response = await http_client.fetch(base_url + path, raise_error=False, request_timeout=10)
        check_answer(response, path)
        statuses[path] = response.code
    return statuses


async def first_events(client: httpx.AsyncClient, url: str, count: int = 1) -> list:
    async with stream(client, url) as events:
        return [await events.next() for _ in range(count)]


async def check_streams_open(base_url: str, run: str = RUN) -> None:
    """The run's live stream starts with a Snapshot, and the Rust-style streams start too."""
    async with httpx.AsyncClient(timeout=10) as client:
        snapshot = (await first_events(client, url_of(base_url, run + "/live")))[0]
        assert snapshot.event == "Snapshot"
        for path in (run + "/log/stream", run + "/log/stream?file=console.log",
                     run.replace("/api/experiments/", "/api/run/").replace("/runs/", "/") + "/stream/vectors"):
            async with client.stream("GET", url_of(base_url, path)) as response:
                assert response.status_code == 200, path
                assert response.headers["content-type"].startswith("text/event-stream")


async def read_until_end(events: EventReader) -> list:
    seen = []
    try:
        while True:
            seen.append(await events.next())
    except StopAsyncIteration:
        return seen


def no_server_errors(caplog) -> None:
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert errors == [], [record.getMessage() for record in errors]


# Deleted while streaming


@pytest.mark.gen_test(timeout=60)
@pytest.mark.parametrize("server_config", [{"watcher": "inotify"}, {"watcher": "poll", "poll_interval": 0.1}])
async def test_experiment_deleted_while_streaming(http_server, base_url, store_root, server_config, caplog):
    async with httpx.AsyncClient(timeout=30) as client:
        async with stream(client, url_of(base_url, RUN + "/live")) as run_events, \
                stream(client, url_of(base_url, "/api/run/vision/nan/stream/vectors")) as vectors, \
                stream(client, url_of(base_url, RUN + "/log/stream")) as log_lines:
            assert (await run_events.next()).event == "Snapshot"
            await vectors.next()
            await log_lines.next()
            shutil.rmtree(os.path.join(store_root, "vision"))
            names = [event.event for event in await read_until_end(run_events)]
            assert await read_until_end(vectors) == []
            assert await read_until_end(log_lines) == []
    assert names == ["RunDeleted"]
    no_server_errors(caplog)


@pytest.mark.gen_test(timeout=60)
async def test_run_deleted_while_written(http_server, base_url, store_root, caplog):
    # The logger rewrites run.yaml while it lives, which brings a deleted folder
    # back, so this run is a RUNNING one whose segment the test itself appends to.
    folder = make_run(store_root, "vision", "doomed", "RUNNING")
    data, ends = stream_bytes(*[metric_table([step], loss=[float(step)]) for step in range(40)])
    segment = os.path.join(folder, "vectors-0000.arrow")
    write_text(segment, data[:ends[19]])
    async with httpx.AsyncClient(timeout=30) as client:
        url = url_of(base_url, "/api/experiments/vision/runs/doomed/live?since_step=-1")
        async with stream(client, url) as events:
            assert (await events.next()).event == "Snapshot"
            assert (await events.next()).event == "MetricsUpdated"
            with open(segment, "ab") as f:
                f.write(data[ends[19]:])
            shutil.rmtree(folder)
            names = [event.event for event in await read_until_end(events)]
    assert names[-1] == "RunDeleted"
    assert set(names) <= {"MetricsUpdated", "RunDeleted"}
    no_server_errors(caplog)


# A file replaced by a folder


@pytest.mark.gen_test(timeout=60)
@pytest.mark.parametrize("name", ["run.yaml", "config.yaml", "vectors.parquet", "run.log",
                                  "artifacts/notes.txt", "artifacts", "../experiment.yaml"])
async def test_file_replaced_by_folder(http_server, http_client, base_url, store_root, name, caplog):
    path = os.path.normpath(os.path.join(store_root, "vision", "baseline", name))
    await check_all_routes(http_client, base_url)  # Cached before the change.
    if os.path.isdir(path):
        shutil.rmtree(path)
    else:
        os.remove(path)
    os.makedirs(os.path.join(path, "inner"))
    statuses = await check_all_routes(http_client, base_url)
    await check_streams_open(base_url)
    no_server_errors(caplog)
    if name == "artifacts/notes.txt":
        assert statuses[RUN + "/artifacts/notes.txt"] == 404
    if name == "run.log":
        assert statuses[RUN + "/logs/run.log"] == 404


@pytest.mark.gen_test(timeout=60)
async def test_log_becomes_folder_while_streaming(http_server, base_url, store_root, caplog):
    folder = os.path.join(store_root, "vision", "baseline")
    async with httpx.AsyncClient(timeout=30) as client:
        async with stream(client, url_of(base_url, RUN + "/live")) as events:
            assert (await events.next()).event == "Snapshot"
            os.remove(os.path.join(folder, "run.log"))
            os.makedirs(os.path.join(folder, "run.log"))
            write_text(os.path.join(folder, "console.log"), "still streaming\n")
            event = await events.next()
            while event.event != "LogMessage":
                event = await events.next()
    assert json.loads(event.data) == {"file": "console.log", "lines": ["still streaming"]}
    no_server_errors(caplog)


# FIFOs and device files under the names of the store's files


SPECIAL_NAMES = ["run.yaml", "config.yaml", "vectors.parquet", "vectors-0000.arrow", "run.log",
                 "console.log", "artifacts/notes.txt", "../experiment.yaml"]


def make_special(path: str, kind: str) -> int | None:
    """Put a FIFO or /dev/zero's device node at ``path``; return a descriptor to close, if any."""
    if os.path.lexists(path):
        os.remove(path)
    if kind == "fifo":
        os.mkfifo(path)
        # An open write end keeps a blocked reader blocked until the end of the test.
        return os.open(path, os.O_RDWR | os.O_NONBLOCK)
    try:
        os.mknod(path, stat.S_IFCHR | 0o644, os.makedev(1, 5))  # /dev/zero: endless bytes
    except PermissionError:
        pytest.skip("creating a device node needs CAP_MKNOD, which this process lacks")
    return None


@pytest.mark.gen_test(timeout=90)
@pytest.mark.parametrize("kind", ["fifo", "device"])
@pytest.mark.parametrize("name", SPECIAL_NAMES)
async def test_special_file_never_blocks(http_server, http_client, base_url, store_root, name, kind, caplog):
    path = os.path.normpath(os.path.join(store_root, "vision", "baseline", name))
    descriptor = make_special(path, kind)
    try:
        started = time.monotonic()
        await check_all_routes(http_client, base_url)
        await check_streams_open(base_url)
        response = await http_client.fetch(base_url + RUN + "/files/" + name.replace("../", ""),
                                           raise_error=False, request_timeout=10)
        assert time.monotonic() - started < 30
    finally:
        if descriptor is not None:
            os.close(descriptor)
    if not name.startswith(".."):
        assert_api_error(response, 404)
    no_server_errors(caplog)


# Files the server may not read


def unprivileged_command() -> list[str]:
    """Return a command prefix that starts the server without the right to read every file.

    As root, ``setpriv`` drops CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH, so that
    file modes apply to the server as they do to any user.
    """
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root, which reads any file, and setpriv (util-linux) is not "
                    "installed to drop CAP_DAC_OVERRIDE")
    drop = "-dac_override,-dac_read_search"
    return [setpriv, "--inh-caps=" + drop, "--bounding-set=" + drop]


def write_locked_store(root: str) -> None:
    """Write a real-logger store, then give some of its files and folders mode 000."""
    write_real_store(root)
    run = new_run(root, "vision", "locked-run")
    run.log_vector({"loss": 1.0}, step=0)
    run.close()
    baseline = os.path.join(root, "vision", "baseline")
    for name in ("run.yaml", "config.yaml", "vectors.parquet", "run.log", "artifacts/notes.txt"):
        os.chmod(os.path.join(baseline, name), 0)
    os.chmod(os.path.join(baseline, "artifacts", "plots"), 0)
    os.chmod(os.path.join(root, "vision", "locked-run"), 0)


def start_server_process(command: list[str], timeout: float = 60) -> tuple[subprocess.Popen, str]:
    """Start a server process; return it and its URL, read from its log."""
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    url = None
    deadline = time.monotonic() + timeout
    while url is None and time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        if "Dashboard and API at " in line:
            url = line.split("Dashboard and API at ", 1)[1].strip().rstrip("/")
    # Keep reading the log, so that a full pipe never blocks the server.
    process.log_reader = threading.Thread(target=process.stderr.read, daemon=True)
    process.log_reader.start()
    return process, url


@pytest.fixture
def unprivileged_server(tmp_path):
    """A server process, without the right to read every file, on a store with mode-000 entries."""
    root = str(tmp_path / "store")
    write_locked_store(root)
    command = unprivileged_command() + [sys.executable, "-m", "expman_tornado", root, "--port=0",
                                        "--ip=127.0.0.1", "--watcher=poll", "--poll-interval=0.2"]
    process, url = start_server_process(command)
    try:
        assert url is not None, "the server did not start"
        yield url, process
    finally:
        process.terminate()
        process.wait(10)
        process.log_reader.join(10)
        process.stderr.close()
        for folder, dirs, files in os.walk(root):
            for name in dirs + files:
                os.chmod(os.path.join(folder, name), 0o755)


def test_unreadable_files_answered(unprivileged_server):
    url, process = unprivileged_server
    statuses = {}
    for path in STORE_ROUTES + [RUN + route for route in RUN_ROUTES] + [
            "/api/experiments/vision/runs/locked-run", "/api/experiments/vision/runs/locked-run/metrics",
            RUN + "/artifacts/content?path=plots/curve.csv", RUN + "/artifacts/plots/curve.csv"]:
        response = requests.get(url + path, timeout=10)
        assert response.status_code < 500, (path, response.status_code, response.text[:300])
        if response.status_code >= 400:
            assert response.json()["error"]["status"] == response.status_code, path
        statuses[path] = response.status_code
    runs = requests.get(url + "/api/experiments/vision/runs", timeout=10).json()
    by_id = {run["id"]: run for run in runs}
    assert by_id["baseline"]["status"] is None  # run.yaml cannot be read: no guessed status.
    assert by_id["locked-run"]["status"] is None
    assert by_id["nan"]["status"] == "FINISHED"
    assert statuses[RUN + "/logs/run.log"] == 403
    assert statuses[RUN + "/artifacts/notes.txt"] == 403
    assert "permission denied" in requests.get(url + RUN + "/logs/run.log", timeout=10).json()[
        "error"]["message"]
    with requests.get(url + RUN + "/live", stream=True, timeout=10) as response:
        assert response.status_code == 200
        assert next(response.iter_lines()) == b"event: Snapshot"
    assert process.poll() is None


# A log line of several megabytes


@pytest.mark.gen_test(timeout=60)
async def test_megabyte_log_line_tail(http_client, base_url, store_root):
    path = os.path.join(store_root, "vision", "baseline", "run.log")
    with open(path, "ab") as f:
        f.write(b"x" * (24 << 20) + b"\nlast line\n")
    started = time.monotonic()
    one = await http_client.fetch(base_url + RUN + "/logs/run.log?tail=1", request_timeout=20)
    two = await http_client.fetch(base_url + RUN + "/logs/run.log?tail=2", request_timeout=20)
    elapsed = time.monotonic() - started
    assert one.body == b"last line\n"
    assert len(two.body) == (24 << 20) + len(b"\nlast line\n")
    assert elapsed < 10  # Reading backwards was quadratic in the line's length: minutes here.


@pytest.mark.gen_test(timeout=90)
async def test_megabyte_log_line_live(http_server, base_url, store_root):
    path = os.path.join(store_root, "vision", "baseline", "run.log")
    long_line = "é" * (3 << 20)  # 6 MiB of two-byte characters: longer than one read window.
    async with httpx.AsyncClient(timeout=30) as client:
        async with stream(client, url_of(base_url, RUN + "/live")) as events, \
                stream(client, url_of(base_url, RUN + "/log/stream")) as text_events:
            assert (await events.next()).event == "Snapshot"
            await text_events.next()  # The file so far.
            with open(path, "a", encoding="utf-8") as f:
                f.write(long_line + "\nafter\n")
            lines = []
            while "after" not in lines:
                event = await events.next()
                if event.event == "LogMessage":
                    lines.extend(json.loads(event.data)["lines"])
            text = ""
            while not text.endswith("after\n"):
                text += (await text_events.next()).data
    # The long line arrives in pieces, cut between characters, and nothing is lost.
    assert "".join(lines[:-1]) == long_line
    assert len(lines) > 2
    assert text.replace("\n", "") == long_line + "after"


@pytest.mark.gen_test(timeout=60)
async def test_megabyte_log_line_resume(http_server, base_url, store_root):
    path = os.path.join(store_root, "vision", "baseline", "run.log")
    with open(path, "ab") as f:
        f.write(b"y" * (9 << 20) + b"\nend\n")
    async with httpx.AsyncClient(timeout=30) as client:
        async with stream(client, url_of(base_url, RUN + "/live"), {"Last-Event-ID": "m200.r0.c0"}) as events:
            assert (await events.next()).event == "Snapshot"
            lines = []
            while "end" not in lines:
                event = await events.next()
                if event.event == "LogMessage":
                    lines.extend(json.loads(event.data)["lines"])
    assert lines[-2:] == ["y" * (9 << 20), "end"]


# Byte ranges


@pytest.mark.gen_test
async def test_unsatisfiable_range_is_json_416(http_client, base_url):
    response = await http_client.fetch(base_url + RUN + "/artifacts/notes.txt", raise_error=False,
                                       headers={"Range": "bytes=100-200"})
    error = assert_api_error(response, 416, mentions="6 bytes")
    assert "bytes=100-200" in error["message"]
    assert response.headers["Content-Range"] == "bytes */6"


# Garbage bytes in YAML and parquet


@pytest.fixture(scope="module")
def garbage_server(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("garbage"))
    write_real_store(root)
    with ServerThread(ExpmanTornado(store=root, watcher="poll", poll_interval=5.0)) as server:
        server.store_root = root
        yield server


def real_file(root: str, name: str) -> bytes:
    with open(os.path.join(root, "vision", "baseline", name), "rb") as f:
        return f.read()


def mutated(data: bytes, seed: int, flips: int) -> bytes:
    """Return ``data`` with bytes overwritten, cut or duplicated at random places."""
    rnd = random.Random(seed)
    out = bytearray(data)
    for _ in range(flips):
        choice = rnd.random()
        position = rnd.randrange(max(1, len(out)))
        if choice < 0.6:
            out[position:position + 1] = bytes([rnd.randrange(256)])
        elif choice < 0.8:
            del out[position:]
        else:
            out[position:position] = out[position:position + rnd.randrange(1, 64)]
    return bytes(out)


GARBAGE_TARGETS = ["run.yaml", "config.yaml", "vectors.parquet", "vectors-0000.arrow", "experiment.yaml"]
counter = iter(range(1 << 30))


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(target=st.sampled_from(GARBAGE_TARGETS), seed=st.integers(0, 1 << 30),
       flips=st.integers(1, 8), random_bytes=st.one_of(st.none(), st.binary(max_size=2048)))
def test_garbage_bytes_never_500(garbage_server, target, seed, flips, random_bytes):
    root = garbage_server.store_root
    run = "garbage-%d" % next(counter)
    folder = os.path.join(root, "vision", run)
    shutil.copytree(os.path.join(root, "vision", "baseline"), folder)
    sources = {"run.yaml": "run.yaml", "config.yaml": "config.yaml", "vectors.parquet": "vectors.parquet",
               "vectors-0000.arrow": None, "experiment.yaml": None}
    if random_bytes is not None:
        data = random_bytes
    elif sources[target] is not None:
        data = mutated(real_file(root, sources[target]), seed, flips)
    else:
        data = mutated(parquet_bytes(metric_table([0, 1], loss=[1.0, 0.5])), seed, flips)
    path = os.path.join(root, "vision", "experiment.yaml") if target == "experiment.yaml" \
        else os.path.join(folder, target)
    write_text(path, data)
    base = "/api/experiments/vision/runs/" + run
    for path in STORE_ROUTES + [base + route for route in RUN_ROUTES] + [base + "/live"]:
        with requests.get(garbage_server.url + path, timeout=10, stream=True) as response:
            assert response.status_code < 500 or response.status_code == 503, (path, response.status_code)
            if response.status_code >= 400:
                assert response.json()["error"]["status"] == response.status_code, path
            elif path.endswith("/live"):
                assert next(response.iter_lines()) == b"event: Snapshot"
            elif response.headers["content-type"].startswith("application/json"):
                strict_json(response.content)
