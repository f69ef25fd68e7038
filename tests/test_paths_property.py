"""Property tests on names and paths in URLs: served from inside the store, or rejected.

Hypothesis builds request paths from experiment, run, file and log names,
real ones and hostile ones (``..``, separators, NUL, encoded dots, symlinks
that lead out). A marker file outside the store, and one inside the store but
outside every run, are the targets of symlinks placed in the store. No reply
may contain the first marker. No file, log or stream route may send the second.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
from urllib.parse import quote, urlsplit

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from expman_tornado.app import ExpmanTornado

from .server_thread import ServerThread
from .stores import write_parquet, write_real_store, write_text, write_yaml

OUTSIDE_MARKER = b"OUTSIDE-STORE-MARKER-7f3a"
RUN_MARKER = b"OUTSIDE-RUN-MARKER-91c2"

#: Routes after ``/api/experiments/{experiment}``, with ``{run}``, ``{path}`` and ``{log}`` filled in.
RUN_ROUTES = [
    "", "/runs", "/runs/{run}", "/runs/{run}/metrics", "/runs/{run}/system", "/runs/{run}/artifacts",
    "/runs/{run}/artifacts/{path}", "/runs/{run}/files/{path}", "/runs/{run}/logs/{log}",
    "/runs/{run}/metadata", "/runs/{run}/config", "/runs/{run}/artifacts/content?path={path}",
    "/metadata", "/runs/{run}/media", "/runs/{run}/histograms",
]
STREAM_ROUTES = [
    "/api/experiments/{experiment}/runs/{run}/log/stream?file={log}",
    "/api/run/{experiment}/{run}/stream/vectors",
    "/api/experiments/{experiment}/runs/{run}/live",
]
#: Routes whose body is bytes of a file (or log) as stored, where a file outside the run must never appear.
FILE_ROUTE_PARTS = ("/artifacts/", "/files/", "/logs/", "/log/stream", "/stream/vectors", "/live")

EXPERIMENTS = ["vision", "linked-exp", "..", ".", "%2e%2e", "vision/..", "vis\\ion", "vision\x00"]
RUNS = ["baseline", "nan", "linked-run", "alias", "..", ".", "%2e%2e", "baseline/../nan", "artifacts"]
SEGMENTS = ["notes.txt", "plots", "curve.csv", "out-store.txt", "out-run.txt", "out-dir", "secret.txt",
            "run.yaml", "run.log", "config.yaml", "artifacts", "..", ".", "", "%2e%2e", "%2F", "\\",
            "\x00", "~", "/etc/passwd", "marker.txt"]
LOGS = ["run.log", "console.log", "../run.log", "..", "run.yaml", "%2e%2e%2Frun.yaml", "\x00"]


def write_store(base: str) -> str:
    """Write a real-logger store, markers outside runs and the store, and symlinks to them."""
    root = os.path.join(base, "store")
    outside = os.path.join(base, "outside")
    write_real_store(root)
    write_text(os.path.join(outside, "secret.txt"), OUTSIDE_MARKER + b"\n")
    write_text(os.path.join(outside, "run.log"), OUTSIDE_MARKER + b"\n")
    write_yaml(os.path.join(outside, "run.yaml"), {"name": OUTSIDE_MARKER.decode(), "status": "RUNNING"})
    write_yaml(os.path.join(outside, "config.yaml"), {"secret": OUTSIDE_MARKER.decode()})
    write_parquet(os.path.join(outside, "system.parquet"),
                  pa.table({"step": pa.array([0], pa.int64()), OUTSIDE_MARKER.decode(): [1.0]}))
    write_text(os.path.join(outside, "artifacts", "secret.txt"), OUTSIDE_MARKER + b"\n")
    os.makedirs(os.path.join(base, "outside-exp", "run"))
    write_text(os.path.join(base, "outside-exp", "run", "run.log"), OUTSIDE_MARKER + b"\n")

    vision = os.path.join(root, "vision")
    write_text(os.path.join(vision, "marker.txt"), RUN_MARKER + b"\n")
    write_text(os.path.join(root, "marker.txt"), RUN_MARKER + b"\n")
    baseline = os.path.join(vision, "baseline")
    artifacts = os.path.join(baseline, "artifacts")
    os.symlink(os.path.join(outside, "secret.txt"), os.path.join(artifacts, "out-store.txt"))
    os.symlink(os.path.join(vision, "marker.txt"), os.path.join(artifacts, "out-run.txt"))
    os.symlink(outside, os.path.join(artifacts, "out-dir"))
    os.symlink(os.path.join(outside, "secret.txt"), os.path.join(baseline, "console.log"))
    os.symlink(os.path.join(outside, "config.yaml"), os.path.join(vision, "nan", "config.yaml"))
    os.symlink(os.path.join(outside, "system.parquet"), os.path.join(vision, "failed", "system.parquet"))
    os.symlink(os.path.join(vision, "marker.txt"), os.path.join(vision, "nan", "run.log"))
    os.symlink(outside, os.path.join(vision, "linked-run"))
    os.symlink("baseline", os.path.join(vision, "alias"))
    os.symlink(os.path.join(base, "outside-exp"), os.path.join(root, "linked-exp"))
    return root


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = str(tmp_path_factory.mktemp("paths"))
    root = write_store(base)
    application = ExpmanTornado(store=root, watcher="poll", poll_interval=5.0, heartbeat_interval=30.0)
    with ServerThread(application) as running:
        running.store_root = root
        yield running


def encode(name: str, how: str) -> str:
    """Put a name in a URL: percent-encoded as one segment, with '/' kept, or as it is."""
    if how == "segment":
        return quote(name, safe="")
    if how == "path":
        return quote(name, safe="/")
    return quote(name, safe="/%.\\~")  # Raw: existing escapes and dots go through unchanged.


def request(server, path: str, stream: bool, headers: dict | None = None) -> tuple[int, dict, bytes]:
    """Send a GET with the path exactly as given (no client-side normalization)."""
    host = urlsplit(server.url)
    connection = http.client.HTTPConnection(host.hostname, host.port, timeout=10)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        headers = {name.lower(): value for name, value in response.getheaders()}
        if stream and response.status == 200:
            connection.sock.settimeout(0.3)
            body = b""
            try:
                while len(body) < 1 << 20:
                    chunk = response.read1(65536)
                    if not chunk:
                        break
                    body += chunk
            except (socket.timeout, TimeoutError):
                pass
            return response.status, headers, body
        return response.status, headers, response.read()
    finally:
        connection.close()


def check_reply(server, path: str, status: int, headers: dict, body: bytes) -> None:
    assert status in (200, 206, 304, 400, 403, 404), (path, status, body[:200])
    assert OUTSIDE_MARKER not in body, path
    if any(part in path for part in FILE_ROUTE_PARTS):
        assert RUN_MARKER not in body, path
    if status >= 400:
        assert headers["content-type"].startswith("application/json"), path
        error = json.loads(body)["error"]
        assert error["status"] == status, path


# Real names come up often, so that generated paths reach the symlinks inside runs.
names = st.one_of(st.just("vision"), st.sampled_from(EXPERIMENTS), st.text(max_size=12))
run_names = st.one_of(st.sampled_from(["baseline", "nan", "alias"]), st.sampled_from(RUNS),
                      st.text(max_size=12))
file_paths = st.one_of(
    st.lists(st.sampled_from(SEGMENTS), min_size=1, max_size=4).map("/".join),
    st.text(max_size=20),
)
log_names = st.one_of(st.sampled_from(["run.log", "console.log"]), st.sampled_from(LOGS), st.text(max_size=10))
encodings = st.sampled_from(["segment", "path", "raw"])


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(route=st.sampled_from(RUN_ROUTES), experiment=names, run=run_names, path=file_paths,
       log=log_names, how=encodings)
def test_route_inside_store_or_rejected(server, route, experiment, run, path, log, how):
    url = "/api/experiments/" + encode(experiment, how) + route.format(
        run=encode(run, how), path=encode(path, "path" if how == "segment" else how), log=encode(log, how))
    status, headers, body = request(server, url, stream=False)
    check_reply(server, url, status, headers, body)
    if status == 200 and ("/artifacts/" in route or "/files/" in route):
        assert_body_is_run_file(server, body)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(route=st.sampled_from(STREAM_ROUTES), experiment=names, run=run_names, log=log_names, how=encodings,
       last_event_id=st.sampled_from([None, "m0.r0.c0", "m0", "m999999.r999999.c999999"]))
def test_stream_inside_store_or_rejected(server, route, experiment, run, log, how, last_event_id):
    url = route.format(experiment=encode(experiment, how), run=encode(run, how), log=encode(log, how))
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    status, headers, body = request(server, url, stream=True, headers=headers)
    check_reply(server, url, status, headers, body)


def assert_body_is_run_file(server, body: bytes) -> None:
    """Check that a served file's bytes are those of a regular file inside some run of the store."""
    root = server.store_root
    for experiment in os.listdir(root):
        folder = os.path.join(root, experiment)
        if not os.path.isdir(folder) or os.path.islink(folder):
            continue
        for run in os.listdir(folder):
            run_folder = os.path.join(folder, run)
            if os.path.islink(run_folder) or not os.path.isdir(run_folder):
                continue
            for dirpath, _, files in os.walk(run_folder):
                for name in files:
                    path = os.path.join(dirpath, name)
                    if os.path.islink(path):
                        continue
                    with open(path, "rb") as f:
                        if body and body in f.read():
                            return
    raise AssertionError("served bytes are not those of any file inside a run: %r" % body[:100])


def test_symlinks_in_store_rejected(server):
    """The hand-picked cases that the properties above should hit, each checked once."""
    base = "/api/experiments/vision/runs/baseline"
    cases = {
        base + "/artifacts/out-store.txt": 403,
        base + "/artifacts/out-run.txt": 403,
        base + "/artifacts/out-dir/secret.txt": 403,
        base + "/files/artifacts/out-store.txt": 403,
        base + "/artifacts/content?path=out-store.txt": 403,
        base + "/logs/console.log": 403,
        base + "/log/stream?file=console.log": 200,
        base + "/live": 200,
        "/api/experiments/vision/runs/nan/live": 200,
        "/api/experiments/vision/runs/nan/log/stream": 200,
        "/api/experiments/vision/runs/nan/logs/run.log": 403,
        "/api/experiments/vision/runs/linked-run": 404,
        "/api/experiments/linked-exp/runs": 404,
        "/api/experiments/vision/runs/alias/artifacts/notes.txt": 200,
    }
    for url, expected in cases.items():
        stream = "stream" in url or url.endswith("/live")
        # Resuming from the start makes the live routes read the logs from their first byte.
        status, headers, body = request(server, url, stream, {"Last-Event-ID": "m0.r0.c0"})
        assert status == expected, (url, status, body[:200])
        check_reply(server, url, status, headers, body)
