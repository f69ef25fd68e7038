"""Two ``expman-tornado`` processes on one store, behind a real nginx.

The processes and nginx are child processes on 127.0.0.1. nginx runs the
example configuration in docs/nginx with its ports filled in, inside an
``http`` block that turns gzip on for JSON and event streams, as many sites
do. Both processes and the proxy must return the same JSON. A run that the
real logger keeps writing must stream through nginx with no gap and no
repeat, and a client that resumes with ``Last-Event-ID`` on the other
process must get exactly what it missed. ``/api/live`` of each process must
report a new run, and the token cookie of one process must work on the other.

Without Debian's nginx (``apt-get install -y nginx``) the tests are skipped,
unless ``EXPMAN_REQUIRE_NGINX=1`` or ``CI=true`` is set, which turns the skip
into a failure.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from httpx_sse import connect_sse

from .stores import new_run, write_real_store

EXAMPLE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                       "docs", "nginx", "expman-tornado.conf")
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
TOKEN = "team-token"
AUTH = {"Authorization": "token " + TOKEN}
#: The experiment of the runs that tests write (``vision`` contains the finished runs).
EXPERIMENT = "team"

#: Seconds a child process may take to respond to its first request.
START_SECONDS = 60.0
#: Seconds any single read may wait before a test fails (a bound, not a measurement).
READ_SECONDS = 10.0
#: Bound of every loop that reads events.
MAX_EVENTS = 5000


def nginx_missing() -> str | None:
    """Return why nginx cannot run here, or None when it can."""
    if not os.path.exists(NGINX):
        return "nginx is not installed (apt-get install -y nginx)"
    return None


def nginx_required() -> bool:
    return os.environ.get("EXPMAN_REQUIRE_NGINX") == "1" or os.environ.get("CI") == "true"


@pytest.fixture(scope="module", autouse=True)
def _nginx_present() -> None:
    reason = nginx_missing()
    if reason is None:
        return
    if nginx_required():
        pytest.fail("EXPMAN_REQUIRE_NGINX=1 or CI=true asks for the nginx tests, but " + reason)
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ChildProcess:
    """A child process whose output goes to a log file, ended by its pid in :meth:`stop`."""

    def __init__(self, command: list[str], log_path: str):
        self.command = command
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    def start(self) -> ChildProcess:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT)
        return self

    def wait_ready(self, url: str) -> None:
        """Wait until ``url`` returns 200, or raise RuntimeError with the end of the log."""
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                if httpx.get(url, headers=AUTH, timeout=2, trust_env=False).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        with open(self.log_path, encoding="utf-8", errors="replace") as log:
            tail = log.read()[-3000:]
        raise RuntimeError("%s did not respond at %s. Its log:\n%s" % (self.command[0], url, tail))

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def server_command(store: str, port: int) -> list[str]:
    """Return the ``expman-tornado`` command of this environment, or ``python -m`` without it."""
    script = os.path.join(os.path.dirname(sys.executable), "expman-tornado")
    command = [script] if os.path.exists(script) else [sys.executable, "-m", "expman_tornado"]
    return command + [store, "--ip=127.0.0.1", "--port=%d" % port, "--token=" + TOKEN]


def nginx_config(folder: str, listen: int, upstreams: list[int]) -> str:
    """Write the example configuration with these ports inside a main config; return its path."""
    with open(EXAMPLE, encoding="utf-8") as f:
        example = f.read()
    servers = re.findall(r"^ *server 127\.0\.0\.1:\d+;\n", example, re.M)
    assert len(servers) == 2, "the example no longer lists two upstream servers"
    upstream_lines = "".join("    server 127.0.0.1:%d;\n" % port for port in upstreams)
    filled = example.replace(servers[0], upstream_lines)
    filled = filled.replace(servers[1], "")
    assert filled.count("listen 80;") == 1, "the example no longer listens on port 80"
    filled = filled.replace("listen 80;", "listen 127.0.0.1:%d;" % listen)
    site = os.path.join(folder, "expman-tornado.conf")
    with open(site, "w", encoding="utf-8") as f:
        f.write(filled)

    temporary = "\n".join("    %s_temp_path %s;" % (kind, os.path.join(folder, kind))
                          for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    main = os.path.join(folder, "nginx.conf")
    with open(main, "w", encoding="utf-8") as f:
        # Without it, a root nginx runs its workers as user "nobody", who cannot enter
        # pytest's temporary folder (mode 0700), where nginx writes large request bodies.
        f.write("user root;\n" if os.geteuid() == 0 else "")
        f.write(
            "worker_processes 1;\n"
            "pid %(folder)s/nginx.pid;\n"
            "error_log %(folder)s/error.log info;\n"
            "events { worker_connections 256; }\n"
            "http {\n"
            "    access_log %(folder)s/access.log;\n"
            "%(temporary)s\n"
            "    gzip on;\n"
            "    gzip_types application/json text/event-stream;\n"
            "    gzip_min_length 0;\n"
            "    # Names the process that answered, so a test sees both take requests.\n"
            "    add_header X-Upstream $upstream_addr always;\n"
            "    include %(site)s;\n"
            "}\n" % {"folder": folder, "temporary": temporary, "site": site}
        )
    return main


@dataclass
class Team:
    """The URLs of the two processes and of nginx, and the store they serve."""

    store: str
    first: str
    second: str
    proxy: str
    ports: list[int]


@pytest.fixture(scope="module")
def team(tmp_path_factory) -> Iterator[Team]:
    """A store written by the real logger, two processes serving it, and nginx in front."""
    store = str(tmp_path_factory.mktemp("team-store"))
    write_real_store(store)
    folder = str(tmp_path_factory.mktemp("team-nginx"))
    ports = [free_port(), free_port()]
    listen = free_port()
    children = [
        ChildProcess(server_command(store, port), os.path.join(folder, "server-%d.log" % port))
        for port in ports
    ]
    nginx = ChildProcess([NGINX, "-p", folder, "-e", os.path.join(folder, "error.log"),
                          "-c", nginx_config(folder, listen, ports), "-g", "daemon off;"],
                         os.path.join(folder, "nginx.log"))
    children.append(nginx)
    urls = ["http://127.0.0.1:%d" % port for port in ports + [listen]]
    try:
        for child in children:
            child.start()
        for child, url in zip(children, urls):
            child.wait_ready(url + "/api/server")
        yield Team(store, *urls, ports)
    finally:
        for child in children:
            child.stop()


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(headers=AUTH, timeout=READ_SECONDS, trust_env=False) as http:
        yield http


def get_json(http: httpx.Client, url: str) -> tuple[int, object]:
    response = http.get(url)
    assert response.headers["content-type"].startswith("application/json"), url
    return response.status_code, response.json()


def upstream_port(response: httpx.Response) -> int:
    return int(response.headers["x-upstream"].rsplit(":", 1)[1])


PATHS = [
    "/api/experiments",
    "/api/experiments/vision/runs",
    "/api/experiments/vision/runs/baseline",
    "/api/experiments/vision/runs/baseline/metrics",
    "/api/experiments/vision/runs/nan/metrics",
    "/api/experiments/vision/runs/failed",
    "/api/experiments/vision/runs/missing",
    "/api/nothing-here",
]


def test_same_answers_from_each(team, client):
    answered = set()
    for path in PATHS:
        first = get_json(client, team.first + path)
        assert first[0] in (200, 404), path
        assert get_json(client, team.second + path) == first, path
        for _ in range(4):
            response = client.get(team.proxy + path)
            assert (response.status_code, response.json()) == first, path
            answered.add(upstream_port(response))
    assert answered == set(team.ports), "nginx did not spread requests over both processes"


class Events:
    """The events of one stream, read with httpx-sse, without the heartbeats."""

    def __init__(self, http: httpx.Client, url: str, last_event_id: str | None = None, **headers):
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        self._context = connect_sse(http, "GET", url, headers=headers)
        self.source = self._context.__enter__()
        self.response = self.source.response
        if self.response.status_code != 200:
            body = self.response.read()[:300]
            self.close()
            raise AssertionError("%s returned %d: %r" % (url, self.response.status_code, body))
        self._events = self.source.iter_sse()
        self.last_id: str | None = None

    def __iter__(self):
        for _ in range(MAX_EVENTS):
            event = next(self._events, None)
            if event is None:
                return
            if event.event == "message" and not event.data:
                continue  # A heartbeat comment after an event with an id.
            if event.id:
                self.last_id = event.id
            yield event.event, json.loads(event.data)

    def close(self) -> None:
        self._context.__exit__(None, None, None)


class Received:
    """Metric steps and run.log lines gathered from a run's events, across reconnections."""

    def __init__(self) -> None:
        self.steps: list[int] = []
        self.lines: list[str] = []
        self.status: str | None = None

    def add(self, name: str, data: dict) -> None:
        if name == "MetricsUpdated":
            self.steps.extend(row["step"] for row in data["rows"])
        elif name == "LogMessage" and data["file"] == "run.log":
            self.lines.extend(data["lines"])
        elif name in ("Snapshot", "StatusChanged"):
            self.status = data["status"]

    def read(self, events: Events, until) -> None:
        """Read events until ``until(self)`` is true."""
        if until(self):
            return
        for name, data in events:
            self.add(name, data)
            if until(self):
                return
        raise AssertionError("the stream ended, or sent %d events, before the expected ones"
                             % MAX_EVENTS)


def read_until(events: Events, expected: tuple[str, dict]) -> list[tuple[str, dict]]:
    """Return the events read up to and including ``expected``, or all of them if it never came."""
    seen = []
    for event in events:
        seen.append(event)
        if event == expected:
            break
    return seen


def live_url(base: str, run: str, query: str = "") -> str:
    return "%s/api/experiments/%s/runs/%s/live%s" % (base, EXPERIMENT, run, query)


def logged_steps(lines: list[str]) -> list[int]:
    """Return the step numbers of the ``step N`` lines written by :class:`Writer`."""
    steps = []
    for line in lines:
        match = re.search(r"step (\d+)\s*$", line)
        if match:
            steps.append(int(match.group(1)))
    return steps


class Writer:
    """The real logger writing ``steps`` steps of one run in a thread, a run.log line every 50."""

    def __init__(self, store: str, run: str, steps: int):
        self.run = new_run(store, EXPERIMENT, run, flush_interval_ms=20, flush_interval_rows=50)
        self.steps = steps
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._write, daemon=True)

    def _write(self) -> None:
        try:
            for step in range(self.steps):
                self.run.log_vector({"loss": 1.0 / (step + 1)}, step=step)
                if step % 50 == 0:
                    self.run.info("step %d" % step)
                if step % 4 == 0:
                    time.sleep(0.002)
            self.run.close()
        except BaseException as exc:  # Reported by the test, which runs in another thread.
            self.error = exc
        finally:
            self.done.set()

    def join(self) -> None:
        self.thread.join(READ_SECONDS)
        assert not self.thread.is_alive(), "the logger did not finish"
        assert self.error is None, repr(self.error)


def test_stream_through_nginx_in_step(team, client):
    run = new_run(team.store, EXPERIMENT, "lockstep", flush_interval_ms=20)
    run.log_vector({"loss": 1.0}, step=0)
    received = Received()
    url = live_url(team.proxy, "lockstep", "?since_step=-1")
    events = Events(client, url, **{"Accept-Encoding": "gzip"})
    try:
        assert events.response.headers["content-type"].startswith("text/event-stream")
        assert "content-encoding" not in events.response.headers
        first = next(iter(events))
        assert first[0] == "Snapshot"
        received.add(*first)

        # Each step is written only once the previous one has arrived, so a
        # stream that nginx held back in a buffer would stop this loop.
        for step in range(1, 6):
            run.log_vector({"loss": 1.0 / (step + 1)}, step=step)
            received.read(events, lambda got: step in got.steps)
        assert received.steps == list(range(6))

        for step in range(6, 1006):
            run.log_vector({"loss": 1.0 / (step + 1)}, step=step)
        run.close()
        received.read(events, lambda got: len(got.steps) >= 1006 and got.status == "FINISHED")
    finally:
        events.close()
    assert received.steps == list(range(1006))


def test_resume_on_other_process(team, client):
    steps = 1500
    writer = Writer(team.store, "resumed", steps)
    received = Received()
    legs = [(team.first, 200), (team.second, 700), (team.proxy, steps)]
    # An id that counts nothing yet, so the first leg sends the run.log lines
    # written before it connected too (since_step=-1 would send only the rows).
    last_id = "m0.r0.c0"
    writer.thread.start()
    try:
        for base, until in legs:
            events = Events(client, live_url(base, "resumed"), last_event_id=last_id)
            try:
                received.read(events, lambda got: len(got.steps) >= until)
            finally:
                events.close()
            last_id = events.last_id
            expected = list(range(len(received.steps)))
            assert received.steps == expected, "gap or repeat after %s" % base
        writer.join()
    finally:
        writer.done.wait(READ_SECONDS)
    assert received.steps == list(range(steps))

    # The run.log lines too: resume once more, now that the run is closed,
    # for the lines not sent yet.
    events = Events(client, live_url(team.second, "resumed"), last_event_id=last_id)
    try:
        received.read(events, lambda got: len(logged_steps(got.lines)) >= steps // 50)
    finally:
        events.close()
    assert logged_steps(received.lines) == list(range(0, steps, 50))
    assert received.steps == list(range(steps))


def first_events(http: httpx.Client, url: str, count: int) -> list[tuple[str, str | None, dict]]:
    """Return the name, id and data of a stream's first ``count`` events."""
    events = Events(http, url)
    first = []
    try:
        for name, data in events:
            first.append((name, events.last_id, data))
            if len(first) == count:
                break
    finally:
        events.close()
    return first


def test_same_event_ids_from_each(team, client):
    url = "/api/experiments/vision/runs/baseline/live?since_step=-1"
    first = first_events(client, team.first + url, 2)
    assert [name for name, _, _ in first] == ["Snapshot", "MetricsUpdated"]
    assert first_events(client, team.second + url, 2) == first
    assert first_events(client, team.proxy + url, 2) == first


def test_store_stream_sees_new_run(team, client):
    streams = [Events(client, base + "/api/live") for base in (team.first, team.second, team.proxy)]
    try:
        run = new_run(team.store, EXPERIMENT, "newcomer")
        run.log_vector({"loss": 1.0}, step=0)
        run.close()
        created = ("RunCreated", {"experiment": EXPERIMENT, "run": "newcomer"})
        for events in streams:
            seen = read_until(events, created)
            assert created in seen, "no RunCreated from %s" % events.response.url
    finally:
        for events in streams:
            events.close()


def test_token_cookie_on_other_process(team):
    with httpx.Client(timeout=READ_SECONDS, trust_env=False) as browser:
        assert browser.get(team.first + "/api/experiments").status_code == 403
        assert browser.get(team.first + "/api/experiments?token=" + TOKEN).status_code == 200
        assert "expman-token" in browser.cookies
        assert browser.get(team.second + "/api/experiments").status_code == 200

        answered = set()
        for _ in range(4):
            response = browser.get(team.proxy + "/api/experiments")
            assert response.status_code == 200
            answered.add(upstream_port(response))
        assert answered == set(team.ports)


def test_request_bodies_through_nginx(team, client):
    run = new_run(team.store, EXPERIMENT, "edited")
    run.close()
    path = "/api/experiments/%s/runs/edited" % EXPERIMENT
    reply = client.patch(team.proxy + path, json={"description": "x" * 1000})
    assert reply.status_code == 200, reply.text[:300]
    for base in (team.first, team.second):
        assert client.get(base + path).json()["description"] == "x" * 1000

    # Over the API's 64 KiB: the process's JSON 413. Over nginx's 1 MiB: nginx's own 413.
    reply = client.patch(team.proxy + path, json={"description": "x" * 100_000})
    assert reply.status_code == 413
    assert reply.json()["error"]["status"] == 413
    reply = client.patch(team.proxy + path, json={"description": "x" * 2_000_000})
    assert reply.status_code == 413
    assert reply.headers["content-type"].startswith("text/html")
    assert not reply.headers.get("x-upstream"), "the body reached a process"
