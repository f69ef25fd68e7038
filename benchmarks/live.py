"""Measure the live-update figures of expman-tornado and print them beside the targets.

    python benchmarks/live.py            # full run: about 30 minutes on 2 cores, mostly the 1,000,000-step run
    python benchmarks/live.py --quick    # small sizes: about a minute

The script writes a store into a temporary folder with the real logger
(``expman.Experiment``), starts ``python -m expman_tornado STORE`` on
127.0.0.1 on a free port, and drives it from this one asyncio process with
raw HTTP/1.1 connections (one per SSE client). It measures:

1. write -> client latency with 1 and with many clients on one live run. The
   logger writes a step whose ``sent_at`` metric is ``time.time()`` at the
   ``log_vector`` call; a client records its arrival time minus ``sent_at``.
   The logger's flush interval is part of that figure, so the latency from the
   segment file's change (seen by an inotify watch in the writer process) is
   reported too.
2. server CPU with many idle clients on a quiet store (a finished run, no
   writer alive), from utime + stime in ``/proc/PID/stat``.
3. reads of the segment files per flush with many clients on a large live run,
   counted from outside with ``strace -f -p PID``.
4. the cost of one update at step 1,000 and at the last step of a large live
   run: file change -> client time, and the server's CPU from the write until
   the client has the step (``/proc/PID/task/*/schedstat``), beside its CPU
   over the same kind of time with no new step.

Every wait of the driving process has a deadline (a logger process lives until
the driver closes or kills it), and the script ends only the processes it started
(the server, the writers and strace), by pid, also when it fails.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import ctypes
import dataclasses
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import random
import re
import resource
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

EXPERIMENT = "bench"
SEGMENT = re.compile(r"^vectors-(\d+)\.arrow$")
WRITER_REPLY = "@@"  # Prefix of the writer's protocol lines on stdout.
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

# The project's targets for live updates on a 2-core machine.
TARGET_P50_MS = 20.0
TARGET_P99_MS = 100.0
TARGET_IDLE_PCT = 2.0


@dataclass(frozen=True)
class Sizes:
    """Sizes and time limits of the measurements."""

    many_clients: int  # clients of the latency test with many clients, and of the idle test
    latency_ticks: int  # steps written per latency test
    idle_seconds: float
    idle_run_steps: int  # rows of the finished run that the idle clients watch
    large_steps: int  # steps of the large live run
    reads_clients: int  # clients on the large run while strace counts reads
    reads_ticks: int
    cost_ticks: int  # steps written to time one update at step 1,000
    large_cost_ticks: int  # steps written to time one update at the end of the large run
    cost_baseline_seconds: float  # time over which the server's background CPU is measured
    cost_period: float  # seconds between the steps of the cost test
    open_timeout: float  # seconds allowed for connecting the clients of the large run
    step_timeout: float  # seconds allowed for one step to reach the clients


FULL = Sizes(many_clients=500, latency_ticks=300, idle_seconds=30.0, idle_run_steps=2_000,
             large_steps=1_000_000, reads_clients=100, reads_ticks=2, cost_ticks=20, large_cost_ticks=3,
             cost_baseline_seconds=10.0, cost_period=0.5, open_timeout=1800.0, step_timeout=1200.0)
QUICK = Sizes(many_clients=50, latency_ticks=40, idle_seconds=5.0, idle_run_steps=2_000,
              large_steps=50_000, reads_clients=10, reads_ticks=2, cost_ticks=3, large_cost_ticks=3,
              cost_baseline_seconds=2.0, cost_period=0.3, open_timeout=120.0, step_timeout=30.0)
SMALL_STEPS = 1_000


# The writer: a child process that owns one run of the real logger.


def metric_values(step: int, sent_at: float) -> dict:
    """Return eight metrics for one step; ``sent_at`` carries the time of the write."""
    return {
        "sent_at": sent_at,
        "loss": 1.0 / (1.0 + step),
        "accuracy": 1.0 - 1.0 / (2.0 + step),
        "lr": 0.001,
        "grad_norm": 1.0 + (step % 7) / 7.0,
        "epoch": float(step // 1000),
        "tokens": float(step * 512),
        "throughput": 250.0 + step % 13,
    }


class SegmentWatch(threading.Thread):
    """An inotify watch on a run folder that records when vectors segments change.

    Each record is ``[time, name, size, grown_by]``: the ``time.time()`` at which
    the change was read, the segment's size then, and the bytes it grew by since
    the previous record of that file (a new file starts at 0).
    """

    IN_MODIFY = 0x00000002
    IN_CREATE = 0x00000100

    def __init__(self, folder: str):
        super().__init__(daemon=True)
        self.folder = folder
        self.recording = False
        self.last_change = time.time()
        self._records: list[list] = []
        self._sizes: dict[str, int] = {}
        self._lock = threading.Lock()
        libc = ctypes.CDLL(None, use_errno=True)
        self._fd = libc.inotify_init1(os.O_CLOEXEC)
        if self._fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        if libc.inotify_add_watch(self._fd, folder.encode(), self.IN_MODIFY | self.IN_CREATE) < 0:
            raise OSError(ctypes.get_errno(), "inotify_add_watch failed for %s" % folder)

    def run(self) -> None:
        # A daemon thread: it ends with the writer process.
        while True:
            data = os.read(self._fd, 1 << 16)
            now = time.time()
            offset = 0
            while offset + 16 <= len(data):
                _, mask, _, length = struct.unpack_from("iIII", data, offset)
                name = data[offset + 16: offset + 16 + length].rstrip(b"\0").decode(errors="replace")
                offset += 16 + length
                if SEGMENT.match(name):
                    self.last_change = now
                    if self.recording:
                        self._record(now, name, bool(mask & self.IN_CREATE))

    def _record(self, now: float, name: str, created: bool) -> None:
        try:
            size = os.stat(os.path.join(self.folder, name)).st_size
        except OSError:
            return
        with self._lock:
            before = 0 if created else self._sizes.get(name, 0)
            self._sizes[name] = size
            self._records.append([now, name, size, size - before])

    def start_recording(self) -> None:
        """Note the current size of every segment, then record each change."""
        sizes = {}
        for name in os.listdir(self.folder):
            if SEGMENT.match(name):
                try:
                    sizes[name] = os.stat(os.path.join(self.folder, name)).st_size
                except OSError:
                    continue
        with self._lock:
            self._sizes = sizes
            self._records = []
        self.recording = True

    def take(self) -> list[list]:
        with self._lock:
            records, self._records = self._records, []
        return records

    def wait_quiet(self, quiet_seconds: float, timeout: float) -> bool:
        """Wait until no segment changed for ``quiet_seconds``; False if ``timeout`` passed first."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if time.time() - self.last_change >= quiet_seconds:
                return True
            time.sleep(0.05)
        return False


def writer_main(store: str, run: str, flush_ms: int) -> None:
    """Serve the parent's commands on stdin, one per line, with one JSON reply line each.

    Commands: ``bulk N`` (write N steps at full speed and wait until they are
    flushed), ``tick`` (write one step now), ``events`` (the segment changes
    recorded since the last ``events``), ``close`` (close the run and exit).
    """
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # Whatever the logger prints goes to the log file, not into the replies.

    def reply(data: dict) -> None:
        replies.write(WRITER_REPLY + json.dumps(data) + "\n")

    from expman import Experiment

    experiment = Experiment(EXPERIMENT, run_name=run, base_dir=store, flush_interval_ms=flush_ms,
                            redirect_console=False, system_metrics_interval_secs=0,
                            capture_provenance=False)
    folder = os.path.join(store, EXPERIMENT, run)
    watch = SegmentWatch(folder)
    watch.start()
    step = 0
    reply({"ready": True})
    for line in sys.stdin:
        command, *args = line.split()
        if command == "bulk":
            watch.recording = False
            for _ in range(int(args[0])):
                experiment.log_vector(metric_values(step, time.time()), step=step)
                step += 1
            quiet = watch.wait_quiet(0.5, timeout=300.0)
            watch.start_recording()
            reply({"last_step": step - 1, "flushed": quiet})
        elif command == "tick":
            sent_at = time.time()
            experiment.log_vector(metric_values(step, sent_at), step=step)
            reply({"step": step, "sent_at": sent_at})
            step += 1
        elif command == "events":
            reply({"events": watch.take()})
        elif command == "close":
            experiment.close()
            reply({"closed": True})
            return
        else:
            reply({"error": "unknown command %r" % command})


class Writer:
    """The parent's handle on one writer process."""

    def __init__(self, process: asyncio.subprocess.Process, run: str, log_path: str):
        self.process = process
        self.run = run
        self.log_path = log_path

    @classmethod
    async def start(cls, store: str, run: str, flush_ms: int, log_dir: str) -> Writer:
        log_path = os.path.join(log_dir, "writer-%s.log" % run)
        with open(log_path, "wb") as log_file:
            process = await asyncio.create_subprocess_exec(
                sys.executable, os.path.abspath(__file__), "--writer", store, run, str(flush_ms),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=log_file,
                limit=64 << 20,
            )
        writer = cls(process, run, log_path)
        try:
            await writer._reply(60.0)
        except BaseException:
            await writer.stop()
            raise
        return writer

    async def call(self, command: str, timeout: float = 30.0) -> dict:
        assert self.process.stdin is not None
        self.process.stdin.write(command.encode() + b"\n")
        await self.process.stdin.drain()
        return await self._reply(timeout)

    async def _reply(self, timeout: float) -> dict:
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        for _ in range(10_000):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                line = await asyncio.wait_for(self.process.stdout.readline(), remaining)
            except asyncio.TimeoutError:
                break
            if not line:
                raise RuntimeError("writer of run %r exited; see %s:\n%s"
                                   % (self.run, self.log_path, tail(self.log_path)))
            text = line.decode(errors="replace")
            if text.startswith(WRITER_REPLY):
                data = json.loads(text[len(WRITER_REPLY):])
                if "error" in data:
                    raise RuntimeError("writer of run %r: %s" % (self.run, data["error"]))
                return data
        raise RuntimeError("writer of run %r did not reply within %.0f s" % (self.run, timeout))

    async def close(self) -> None:
        await self.call("close", timeout=120.0)
        await asyncio.wait_for(self.process.wait(), 30.0)

    async def stop(self) -> None:
        """End the writer process (by its pid) unless it has ended."""
        if self.process.returncode is None:
            self.process.kill()
            await asyncio.wait_for(self.process.wait(), 10.0)


# The server process.


class Server:
    """``python -m expman_tornado STORE`` on 127.0.0.1, started and ended by this script."""

    def __init__(self, store: str, watcher: str, log_dir: str):
        self.store = os.path.realpath(store)
        self.port = free_port()
        self.log_path = os.path.join(log_dir, "server.log")
        command = [sys.executable, "-m", "expman_tornado", self.store, "--ip=127.0.0.1",
                   "--port=%d" % self.port, "--watcher=%s" % watcher]
        with open(self.log_path, "wb") as log_file:
            self.process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL)
        self.pid = self.process.pid

    async def wait_ready(self, timeout: float = 60.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("server exited with code %s:\n%s" % (self.process.returncode, tail(self.log_path)))
            try:
                info = await get_json(self.port, "/api/server", timeout=5.0)
            except (OSError, ValueError, asyncio.TimeoutError):
                await asyncio.sleep(0.2)
                continue
            if os.path.realpath(info.get("store") or "") != self.store:
                raise RuntimeError("port %d serves store %r, not ours" % (self.port, info.get("store")))
            return info
        raise RuntimeError("server not ready within %.0f s:\n%s" % (timeout, tail(self.log_path)))

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError("server exited with code %s:\n%s" % (self.process.returncode, tail(self.log_path)))

    def stop(self) -> None:
        """End the server by its pid: SIGTERM, then SIGKILL after 10 s."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10.0)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10.0)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def get_json(port: int, path: str, timeout: float = 10.0) -> dict:
    """GET a JSON route over a fresh HTTP/1.0 connection (no proxy, no keep-alive)."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
    try:
        writer.write(("GET %s HTTP/1.0\r\nHost: 127.0.0.1:%d\r\n\r\n" % (path, port)).encode())
        data = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(None, 2)[1])
    if status != 200:
        raise ValueError("GET %s: HTTP %d" % (path, status))
    return json.loads(body)


def tail(path: str, size: int = 3000) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - size))
            return f.read().decode(errors="replace")
    except OSError:
        return ""


# SSE clients.


@dataclass
class Event:
    arrival: float  # time.time() when the chunk that completed the event arrived
    name: str | None  # None for a comment (the server's heartbeat)
    data: bytes


class SseParser:
    """Incremental parser of an HTTP/1.1 response carrying ``text/event-stream``."""

    def __init__(self) -> None:
        self._raw = b""
        self._headers_done = False
        self._chunked = False
        self._chunk_left = 0  # Bytes of the current chunk still to come (0: a size line is next).
        self._body = b""

    def feed(self, arrival: float, data: bytes) -> list[Event]:
        self._raw += data
        if not self._headers_done:
            end = self._raw.find(b"\r\n\r\n")
            if end < 0:
                return []
            head, self._raw = self._raw[:end].decode("latin-1"), self._raw[end + 4:]
            status = int(head.split(None, 2)[1])
            if status != 200:
                raise ConnectionError("HTTP %d: %s" % (status, self._raw[:300]))
            self._chunked = "transfer-encoding: chunked" in head.lower()
            self._headers_done = True
        self._dechunk()
        return self._events(arrival)

    def _dechunk(self) -> None:
        if not self._chunked:
            self._body += self._raw
            self._raw = b""
            return
        for _ in range(1_000_000):
            if self._chunk_left:
                take = self._raw[: self._chunk_left]
                self._body += take
                self._raw = self._raw[len(take):]
                self._chunk_left -= len(take)
                if self._chunk_left:
                    return
                self._chunk_left = -2  # The CRLF after the chunk's data.
            if self._chunk_left == -2:
                if len(self._raw) < 2:
                    return
                self._raw = self._raw[2:]
                self._chunk_left = 0
            end = self._raw.find(b"\r\n")
            if end < 0:
                return
            size = int(self._raw[:end].split(b";")[0], 16)
            self._raw = self._raw[end + 2:]
            if size == 0:
                return  # The end of the response.
            self._chunk_left = size

    def _events(self, arrival: float) -> list[Event]:
        events = []
        while True:
            end = self._body.find(b"\n\n")
            if end < 0:
                return events
            block, self._body = self._body[:end], self._body[end + 2:]
            name, data = None, []
            for line in block.split(b"\n"):
                if line.startswith(b"event:"):
                    name = line[6:].strip().decode()
                elif line.startswith(b"data:"):
                    data.append(line[5:].lstrip(b" "))
            events.append(Event(arrival, name, b"\n".join(data)))


class SseClient(asyncio.Protocol):
    """One SSE connection. It parses until the Snapshot; later data is only timed and kept.

    The loop calls ``data_received`` as soon as the socket is readable, so the
    time taken there is the arrival time. Parsing waits for :meth:`drain`, so
    that one client's parsing does not delay the next client's arrival time.
    """

    def __init__(self, request: bytes):
        self.request = request
        self.transport: asyncio.Transport | None = None
        self.parser = SseParser()
        self.snapshot: dict | None = None
        self.ready = asyncio.get_running_loop().create_future()
        self.lost = False
        self._early: list[Event] = []
        self._pending: list[tuple[float, bytes]] = []

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        arrival = time.time()
        if self.snapshot is not None:
            self._pending.append((arrival, data))
            return
        try:
            events = self.parser.feed(arrival, data)
        except (ConnectionError, ValueError) as exc:
            if not self.ready.done():
                self.ready.set_exception(ConnectionError(str(exc)))
            self.close()
            return
        for event in events:
            if event.name == "Snapshot" and self.snapshot is None:
                self.snapshot = json.loads(event.data)
                if not self.ready.done():
                    self.ready.set_result(True)
            else:
                self._early.append(event)

    def connection_lost(self, exc) -> None:
        self.lost = True
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("connection closed before the Snapshot"))

    def drain(self) -> list[Event]:
        """Parse what arrived since the last call and return its events."""
        events, self._early = self._early, []
        pending, self._pending = self._pending, []
        for arrival, data in pending:
            events.extend(self.parser.feed(arrival, data))
        return events

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class Clients:
    """A group of SSE clients on one path, closed together."""

    def __init__(self, port: int, path: str):
        self.port = port
        self.path = path
        self.clients: list[SseClient] = []

    async def connect(self, count: int, timeout: float, concurrency: int = 32) -> None:
        """Open ``count`` more clients and wait until each has its Snapshot."""
        loop = asyncio.get_running_loop()
        request = ("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAccept: text/event-stream\r\n"
                   "Cache-Control: no-cache\r\n\r\n" % (self.path, self.port)).encode()
        limit = asyncio.Semaphore(concurrency)

        async def open_one() -> None:
            client = SseClient(request)
            self.clients.append(client)
            async with limit:
                await loop.create_connection(lambda: client, "127.0.0.1", self.port)
                await client.ready

        tasks = [asyncio.ensure_future(open_one()) for _ in range(count)]
        try:
            await asyncio.wait_for(asyncio.gather(*tasks), timeout)
        except asyncio.TimeoutError:
            ready = sum(1 for client in self.clients if client.snapshot is not None)
            raise RuntimeError("%d of %d clients of %s had their Snapshot after %.0f s"
                               % (ready, count, self.path, timeout)) from None
        finally:
            for task in tasks:
                task.cancel()  # After a failed connection, the others stop connecting.

    def close(self) -> None:
        for client in self.clients:
            client.close()
        self.clients = []


async def wait_released(server: Server, results: Results, timeout: float = 30.0) -> None:
    """Wait until the server reports no subscribers after the clients closed; note it if it still has some."""
    deadline = time.monotonic() + timeout
    count = -1
    while time.monotonic() < deadline:
        server.check_alive()
        count = (await get_json(server.port, "/api/server"))["subscribers"]
        if count == 0:
            return
        await asyncio.sleep(0.2)
    results.notes.append("The server still reported %d subscribers %.0f s after every client closed."
                         % (count, timeout))


def run_path(run: str) -> str:
    return "/api/experiments/%s/runs/%s/live" % (EXPERIMENT, run)


# Measurements.


def process_cpu_seconds(pid: int) -> float:
    """Return utime + stime of a process (all its threads) from /proc/PID/stat, in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def threads_cpu_seconds(pid: int) -> float:
    """Return the CPU time of a process's live threads in seconds, to the nanosecond.

    The first field of /proc/PID/task/TID/schedstat is the thread's time on a
    CPU in ns; /proc/PID/stat counts in clock ticks (usually 10 ms), too coarse for
    one update.
    """
    total = 0
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as f:
                total += int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total / 1e9


def percentile(values: list[float], q: float) -> float:
    """Return the nearest-rank percentile ``q`` (0-100) of ``values``."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100.0 * len(ordered)) - 1)]


def first_change_after(changes: list[list], sent: dict[int, float]) -> dict[int, float]:
    """Map each written step to the time of the first segment change after its write.

    Steps are written far enough apart that the first change after a step's
    write is the flush that carries it. A change after the next write is not
    attributed to the step.
    """
    times = sorted(change[0] for change in changes)
    order = sorted(sent.items(), key=lambda item: item[1])
    found = {}
    for index, (step, sent_at) in enumerate(order):
        position = bisect.bisect_left(times, sent_at)
        if position < len(times):
            next_write = order[index + 1][1] if index + 1 < len(order) else math.inf
            if times[position] < next_write:
                found[step] = times[position]
    return found


def arrivals(client: SseClient, steps: dict[int, float]) -> dict[int, float]:
    """Return the arrival time of each of ``steps`` in a client's MetricsUpdated events."""
    found: dict[int, float] = {}
    for event in client.drain():
        if event.name != "MetricsUpdated":
            continue
        for row in json.loads(event.data)["rows"]:
            step = row.get("step")
            if step in steps and step not in found:
                found[step] = event.arrival
    return found


@dataclass
class Results:
    rows: list[tuple[str, str, str, str]] = field(default_factory=list)  # measurement, figure, target, met
    notes: list[str] = field(default_factory=list)

    def add(self, measurement: str, figure: str, target: str = "", met: bool | None = None) -> None:
        verdict = ""
        if met is not None:
            verdict = "yes" if met else "NO"
        self.rows.append((measurement, figure, target, verdict))
        print("  %s: %s" % (measurement, figure), flush=True)


async def measure_latency(context: Context, results: Results) -> None:
    """Measure write -> client and file change -> client latency with 1 and with many clients."""
    sizes = context.sizes
    results.notes.append(
        "write -> client starts at the log_vector call, so it includes the wait for the "
        "logger's next flush (flush_interval_ms=%d: 0 to %d ms, about %d ms on average). "
        "file change -> client starts when an inotify watch in the writer process saw the "
        "segment change; it is the push latency that the target is about."
        % (context.flush_ms, context.flush_ms, context.flush_ms // 2))
    writer = await context.start_writer("latency")
    try:
        await writer.call("bulk 10")
        for count in (1, sizes.many_clients):
            clients = Clients(context.server.port, run_path("latency"))
            try:
                started = time.monotonic()
                await clients.connect(count, timeout=sizes.open_timeout)
                connect_seconds = time.monotonic() - started
                await asyncio.sleep(1.0)
                for client in clients.clients:
                    client.drain()
                await writer.call("events")
                sent: dict[int, float] = {}
                for _ in range(sizes.latency_ticks):
                    reply = await writer.call("tick")
                    sent[reply["step"]] = reply["sent_at"]
                    # 100 to 150 ms apart, so that writes do not beat in step with the flush timer.
                    await asyncio.sleep(0.1 + random.uniform(0.0, 0.05))
                # Wait until every client has every row, or for step_timeout after the last write.
                got: list[dict[int, float]] = [{} for _ in clients.clients]
                deadline = time.monotonic() + sizes.step_timeout
                while True:
                    for client, seen in zip(clients.clients, got):
                        seen.update(arrivals(client, sent))
                    if all(len(seen) == len(sent) for seen in got) or time.monotonic() > deadline:
                        break
                    await asyncio.sleep(0.1)
                context.server.check_alive()
                changed = first_change_after((await writer.call("events"))["events"], sent)
                from_write, from_file, missing = [], [], 0
                for seen in got:
                    missing += len(sent) - len(seen)
                    for step, arrival in seen.items():
                        from_write.append(arrival - sent[step])
                        if step in changed:
                            from_file.append(arrival - changed[step])
            finally:
                clients.close()
            await wait_released(context.server, results)
            label = "%d client%s" % (count, "" if count == 1 else "s")
            add_latency(results, "write -> client, %s" % label, from_write)
            add_latency(results, "file change -> client, %s" % label, from_file)
            results.notes.append("Latency, %s: connecting took %.1f s; %d of %d rows had not arrived "
                                 "%.0f s after the last write." % (label, connect_seconds, missing,
                                                                   len(sent) * count, sizes.step_timeout))
        await writer.close()
    finally:
        await writer.stop()


def add_latency(results: Results, label: str, samples: list[float]) -> None:
    if not samples:
        results.add(label + ", p50 / p99", "no samples")
        return
    p50, p99 = percentile(samples, 50) * 1e3, percentile(samples, 99) * 1e3
    results.add(label + ", p50 / p99", "%.1f / %.1f ms (max %.1f, n=%d)" % (p50, p99, max(samples) * 1e3, len(samples)),
                "<= %g / <= %g ms" % (TARGET_P50_MS, TARGET_P99_MS), p50 <= TARGET_P50_MS and p99 <= TARGET_P99_MS)


async def measure_idle(context: Context, results: Results) -> None:
    """Measure the server's CPU with many clients connected to a finished run while nothing writes."""
    sizes = context.sizes
    writer = await context.start_writer("idle")
    try:
        await writer.call("bulk %d" % sizes.idle_run_steps, timeout=120.0)
        await writer.close()
    finally:
        await writer.stop()
    clients = Clients(context.server.port, run_path("idle"))
    try:
        await clients.connect(sizes.many_clients, timeout=120.0)
        await asyncio.sleep(3.0)  # Let the connections settle.
        subscribers = (await get_json(context.server.port, "/api/server"))["subscribers"]
        for client in clients.clients:
            client.drain()
        start_cpu, start = process_cpu_seconds(context.server.pid), time.monotonic()
        await asyncio.sleep(sizes.idle_seconds)
        used, elapsed = process_cpu_seconds(context.server.pid) - start_cpu, time.monotonic() - start
        context.server.check_alive()
        heartbeats = sum(1 for client in clients.clients for event in client.drain() if event.name is None)
        lost = sum(client.lost for client in clients.clients)
    finally:
        clients.close()
    await wait_released(context.server, results)
    percent = used / elapsed * 100.0
    results.add("server CPU, %d idle clients, %.0f s" % (sizes.many_clients, elapsed),
                "%.2f %% of a core (%.2f s CPU)" % (percent, used),
                "< %g %%" % TARGET_IDLE_PCT, percent < TARGET_IDLE_PCT)
    results.notes.append(
        "Idle: the clients watch a finished %d-row run; no writer is alive. The server "
        "reported %d subscribers; the clients got %d heartbeat comments in the %.0f s; %d "
        "connections dropped." % (sizes.idle_run_steps, subscribers, heartbeats, elapsed, lost))


async def measure_updates(context: Context, results: Results) -> None:
    """Measure one update at step 1,000 and at the end of a large run, then the reads per flush."""
    sizes = context.sizes
    for run, steps in (("step-1k", SMALL_STEPS), ("large", sizes.large_steps)):
        writer = await context.start_writer(run)
        try:
            started = time.monotonic()
            reply = await writer.call("bulk %d" % steps, timeout=600.0)
            if not reply["flushed"]:
                results.notes.append("%s: the logger kept writing 300 s after the bulk write." % run)
            write_seconds = time.monotonic() - started
            await measure_update_cost(context, results, writer, run, steps, write_seconds)
            if run == "large":
                await measure_reads(context, results, writer, run, steps)
            await writer.close()
        finally:
            await writer.stop()


async def measure_update_cost(context: Context, results: Results, writer: Writer, run: str, steps: int,
                              write_seconds: float) -> None:
    sizes = context.sizes
    pid = context.server.pid
    label = "update at step %s" % format(steps, ",")
    folder = os.path.join(context.store, EXPERIMENT, run)
    segments = sum(1 for name in os.listdir(folder) if SEGMENT.match(name))
    background_alone = await cpu_rate(pid, sizes.cost_baseline_seconds)
    clients = Clients(context.server.port, run_path(run))
    try:
        started = time.monotonic()
        await clients.connect(1, timeout=sizes.open_timeout)
        first_open = time.monotonic() - started
        client = clients.clients[0]
        last_step = client.snapshot.get("last_step") if client.snapshot else None
        if last_step != steps - 1:
            results.notes.append("%s: the Snapshot says last_step=%s, expected %d." % (label, last_step, steps - 1))
        await asyncio.sleep(1.0)
        client.drain()
        await writer.call("events")
        background = await cpu_rate(pid, sizes.cost_baseline_seconds)

        ticks = sizes.cost_ticks if steps == SMALL_STEPS else sizes.large_cost_ticks
        windows, window_cpu, from_file, missing = [], [], [], 0
        for _ in range(ticks):
            start_cpu, start = threads_cpu_seconds(pid), time.monotonic()
            reply = await writer.call("tick")
            step, sent_at = reply["step"], reply["sent_at"]
            arrival = await wait_for_step(client, step, timeout=sizes.step_timeout)
            used, elapsed = threads_cpu_seconds(pid) - start_cpu, time.monotonic() - start
            changed = first_change_after((await writer.call("events"))["events"], {step: sent_at})
            if arrival is None or step not in changed:
                missing += 1
            else:
                windows.append(elapsed)
                window_cpu.append(used)
                from_file.append(arrival - changed[step])
            await asyncio.sleep(sizes.cost_period)
        context.server.check_alive()
    finally:
        clients.close()
    await wait_released(context.server, results)

    if not from_file:
        results.add(label, "no update reached the client within %.0f s" % sizes.step_timeout)
        return
    latency, cpu = statistics.median(from_file), statistics.median(window_cpu)
    results.add(label + ": file change -> client, median",
                "%.1f ms (max %.1f, n=%d)" % (latency * 1e3, max(from_file) * 1e3, len(from_file)))
    results.add(label + ": server CPU from write to client, median",
                "%.1f ms in %.1f ms" % (cpu * 1e3, statistics.median(windows) * 1e3))
    results.add(label + ": server CPU with the run live, no new step",
                "%.1f %% of a core with 1 client, %.1f %% with none" % (background * 100, background_alone * 100))
    context.update_costs[steps] = (latency, cpu)
    if missing:
        results.notes.append("%s: %d of %d steps did not reach the client within %.0f s."
                             % (label, missing, ticks, sizes.step_timeout))
    results.notes.append(
        "%s: %s steps x 8 metrics were written in %.1f s into %d segment files; opening the "
        "first stream of the run (its first read) took %.1f s. The server's CPU is counted "
        "from the write of one step until the client had it, background included; the "
        "background is measured over %.0f s with the writer alive and no new step."
        % (label, format(steps, ","), write_seconds, segments, first_open, sizes.cost_baseline_seconds))


async def cpu_rate(pid: int, seconds: float) -> float:
    """Return the CPU a process uses over ``seconds``, in cores."""
    start_cpu, start = threads_cpu_seconds(pid), time.monotonic()
    await asyncio.sleep(seconds)
    return (threads_cpu_seconds(pid) - start_cpu) / (time.monotonic() - start)


async def wait_for_step(client: SseClient, step: int, timeout: float) -> float | None:
    """Return when the client got ``step`` (its arrival time), or None after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = arrivals(client, {step: 0.0})
        if step in found:
            return found[step]
        await asyncio.sleep(0.005)
    return None


@dataclass
class SyscallCounts:
    """Counts of the server's calls on a run's segment files between one write and the next."""

    seconds: float = 0.0  # length of the window
    new_segment: str | None = None  # the segment that received the flush's rows
    new_segment_opens: int = 0
    new_segment_read: int = 0  # bytes
    new_segment_appended: int = 0  # bytes, from the writer's inotify watch
    segment_opens: int = 0  # openat of any segment of the run, the new one included
    segments_read: int = 0
    segments_appended: int = 0
    segment_stats: int = 0  # stat calls by path on segment files (fstat of an open file not counted)
    folder_listings: int = 0  # getdents64 calls on the run folder


async def measure_reads(context: Context, results: Results, writer: Writer, run: str, steps: int) -> None:
    """Count, with strace, how the server reads the segments on each flush with many clients."""
    sizes = context.sizes
    label = "%d clients, step %s" % (sizes.reads_clients, format(steps, ","))
    strace = shutil.which("strace")
    if strace is None:
        results.add("reads per flush, " + label, "not measured: strace is missing (apt-get install strace)")
        return
    folder = os.path.join(context.store, EXPERIMENT, run)
    trace_path = os.path.join(context.temp, "strace.txt")
    clients = Clients(context.server.port, run_path(run))
    tracer = None
    try:
        started = time.monotonic()
        await clients.connect(sizes.reads_clients, timeout=sizes.open_timeout)
        connect_seconds = time.monotonic() - started
        await asyncio.sleep(1.0)
        for client in clients.clients:
            client.drain()
        await writer.call("events")
        with open(os.path.join(context.temp, "strace.log"), "wb") as log_file:
            tracer = subprocess.Popen(
                [strace, "-f", "-ttt", "-y", "-s", "0", "-o", trace_path,
                 "-e", "trace=openat,read,newfstatat,statx,getdents64", "-p", str(context.server.pid)],
                stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        await asyncio.sleep(2.0)  # strace attaches to every thread of the server
        if tracer.poll() is not None:
            results.add("reads per flush, " + label, "not measured: strace exited (%s)"
                        % tail(os.path.join(context.temp, "strace.log"), 300).strip())
            return
        sent: dict[int, float] = {}
        got: list[set[int]] = [set() for _ in clients.clients]
        for _ in range(sizes.reads_ticks):
            reply = await writer.call("tick")
            sent[reply["step"]] = reply["sent_at"]
            deadline = time.monotonic() + sizes.step_timeout
            while time.monotonic() < deadline and not all(reply["step"] in seen for seen in got):
                await asyncio.sleep(0.02)
                for client, seen in zip(clients.clients, got):
                    seen.update(arrivals(client, sent))
            await asyncio.sleep(0.3)
        end = time.time()
        changes = (await writer.call("events"))["events"]
        tracer.send_signal(signal.SIGINT)  # strace detaches and exits
        tracer.wait(60.0)
        context.server.check_alive()
        missing = sum(len(sent) - len(seen) for seen in got)
    finally:
        if tracer is not None and tracer.poll() is None:
            tracer.kill()
            tracer.wait(10.0)
        clients.close()
    await wait_released(context.server, results)

    counts = count_syscalls(trace_path, folder, sent, end, changes)
    if not counts:
        results.add("reads per flush, " + label, "no flush seen in the trace")
        return
    results.add("opens of the segment with the new rows, per flush, " + label,
                spread([c.new_segment_opens for c in counts]), "1",
                all(c.new_segment_opens == 1 for c in counts))
    results.add("bytes read / appended, that segment, per flush",
                "%s / %s" % (spread([c.new_segment_read for c in counts]),
                             spread([c.new_segment_appended for c in counts])),
                "equal", all(c.new_segment_read == c.new_segment_appended for c in counts))
    results.add("bytes read / appended, all segments, per flush",
                "%s / %s" % (spread([c.segments_read for c in counts]),
                             spread([c.segments_appended for c in counts])),
                "equal", all(c.segments_read == c.segments_appended for c in counts))
    results.add("segment files opened per flush", spread([c.segment_opens for c in counts]))
    results.add("stat calls on segment files per flush", spread([c.segment_stats for c in counts]))
    results.add("listings of the run folder per flush", spread([c.folder_listings for c in counts]))
    results.notes.append(
        "Reads per flush: connecting the %d clients took %.1f s. Then strace -f -p SERVER_PID "
        "traced openat, read, newfstatat, statx and getdents64 while %d steps were written one "
        "at a time, each once every client had the previous one. A flush's window runs from "
        "its write to the next write (median %.1f s under strace, which slows the server), so "
        "stat calls and listings made for run.yaml rewrites in that time count too. Appended "
        "bytes come from the writer's inotify watch; a flush that starts a new segment also "
        "appends the 8-byte end-of-stream marker to the previous one. %d of %d rows never arrived."
        % (sizes.reads_clients, connect_seconds, len(sent), statistics.median(c.seconds for c in counts),
           missing, len(sent) * sizes.reads_clients))


def spread(values: list[int]) -> str:
    low, high = min(values), max(values)
    middle = statistics.median(values)
    return "%g" % middle if low == high else "%g (%d to %d)" % (middle, low, high)


_SYSCALL = re.compile(r"^(\d+)\s+(\d+\.\d+)\s+(\w+)\((.*)\)\s+=\s+(-?\d+)")
_UNFINISHED = re.compile(r"^(\d+)\s+(\d+\.\d+)\s+(\w+)\((.*)<unfinished \.\.\.>$")
_RESUMED = re.compile(r"^(\d+)\s+\d+\.\d+\s+<\.\.\. (\w+) resumed>(.*)\)\s+=\s+(-?\d+)")
_FD_PATH = re.compile(r"^(?:-?\d+|AT_FDCWD)<([^>]*)>")
_QUOTED = re.compile(r'"([^"]*)"')


def count_syscalls(trace_path: str, folder: str, sent: dict[int, float], end: float,
                   changes: list[list]) -> list[SyscallCounts]:
    """Split an strace log into one window per written step and count the calls on the run's segments."""
    folder = os.path.realpath(folder)
    starts = sorted(sent.values())
    windows = [SyscallCounts(seconds=later - start) for start, later in zip(starts, starts[1:] + [end])]
    grown: list[dict[str, int]] = [{} for _ in starts]
    for change_time, name, _, grown_by in changes:
        index = bisect.bisect_right(starts, change_time) - 1
        if index >= 0:
            grown[index][name] = grown[index].get(name, 0) + grown_by
    for counts, sizes in zip(windows, grown):
        counts.segments_appended = sum(sizes.values())
        if sizes:
            counts.new_segment = max(sizes, key=sizes.get)
            counts.new_segment_appended = sizes[counts.new_segment]

    pending: dict[str, tuple[float, str, str]] = {}
    with open(trace_path, errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            match = _SYSCALL.match(line)
            if match:
                _, when, call, args, result = match.groups()
            else:
                unfinished = _UNFINISHED.match(line)
                if unfinished:
                    pending[unfinished.group(1)] = (float(unfinished.group(2)), unfinished.group(3),
                                                    unfinished.group(4))
                    continue
                resumed = _RESUMED.match(line)
                if not resumed or resumed.group(1) not in pending:
                    continue
                start_time, call, head = pending.pop(resumed.group(1))
                when, args, result = str(start_time), head + resumed.group(3), resumed.group(4)
            index = bisect.bisect_right(starts, float(when)) - 1
            if index < 0 or float(when) > end:
                continue
            counts = windows[index]
            path = call_path(call, args)
            if call == "getdents64":
                counts.folder_listings += path == folder
                continue
            if path is None or os.path.dirname(path) != folder or not SEGMENT.match(os.path.basename(path)):
                continue
            is_new = os.path.basename(path) == counts.new_segment
            if call == "openat" and int(result) >= 0:
                counts.segment_opens += 1
                counts.new_segment_opens += is_new
            elif call == "read" and int(result) > 0:
                counts.segments_read += int(result)
                if is_new:
                    counts.new_segment_read += int(result)
            elif call in ("newfstatat", "statx") and not args.startswith(tuple("0123456789")):
                counts.segment_stats += 1
    return windows


def call_path(call: str, args: str) -> str | None:
    """Return the file a traced call is about, from ``-y`` fd paths or its path argument."""
    if call in ("read", "getdents64"):
        match = _FD_PATH.match(args)
        return match.group(1) if match else None
    quoted = _QUOTED.search(args)
    if not quoted or not quoted.group(1):
        return None
    path = quoted.group(1)
    if not path.startswith("/"):
        base = _FD_PATH.match(args)
        if base is None:
            return None
        path = os.path.join(base.group(1), path)
    return os.path.normpath(path)


# Orchestration.


@dataclass
class Context:
    temp: str
    store: str
    server: Server
    sizes: Sizes
    flush_ms: int
    writers: list[Writer] = field(default_factory=list)
    update_costs: dict[int, tuple[float, float]] = field(default_factory=dict)  # steps: (latency, CPU)

    async def start_writer(self, run: str) -> Writer:
        writer = await Writer.start(self.store, run, self.flush_ms, self.temp)
        self.writers.append(writer)
        return writer


def machine_description() -> list[str]:
    model = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        memory_kib = int(next(line for line in f if line.startswith("MemTotal")).split()[1])

    def version(package: str) -> str:
        try:
            return importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            return "?"

    return [
        "code: %s" % code_version(),
        "load average at the start: %s" % load_average(),
        "CPUs available: %d (%s), memory %.1f GiB, %s %s"
        % (len(os.sched_getaffinity(0)), model, memory_kib / 2**20, platform.system(), platform.release()),
        "Python %s; expman-tornado %s, tornado %s, pyarrow %s, expman-rs %s"
        % (platform.python_version(), version("expman-tornado"), version("tornado"),
           version("pyarrow"), version("expman-rs")),
    ]


def code_version() -> str:
    """Return the git commit of the expman_tornado being measured, marked when its files differ from it."""
    spec = importlib.util.find_spec("expman_tornado")
    if spec is None or spec.origin is None:
        return "expman_tornado not found"
    folder = os.path.dirname(spec.origin)
    try:
        commit = subprocess.run(["git", "-C", folder, "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=10).stdout.strip()
        changes = subprocess.run(["git", "-C", folder, "status", "--porcelain", "--", "."], capture_output=True,
                                 text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return folder
    if not commit:
        return folder
    return "%s at commit %s%s" % (folder, commit, " with uncommitted changes" if changes else "")


def load_average() -> str:
    """Return the 1, 5 and 15 minute load averages; other work on the machine skews every figure."""
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def raise_fd_limit(needed: int) -> int:
    """Raise this process's open-file limit toward ``needed`` (at most the hard limit); return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    new_soft = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if soft != resource.RLIM_INFINITY and soft < new_soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (new_soft, hard))
        soft = new_soft
    return soft


def print_table(results: Results, header: list[str]) -> None:
    titles = ("measurement", "figure", "target", "met")
    widths = [max(len(row[i]) for row in results.rows + [titles]) for i in range(4)]
    print()
    for line in header:
        print(line)
    print()
    for row in [titles, tuple("-" * w for w in widths)] + results.rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    print()
    for note in results.notes:
        print("- " + note)


async def run_benchmarks(args: argparse.Namespace) -> int:
    sizes = QUICK if args.quick else FULL
    if args.large_steps is not None:
        sizes = dataclasses.replace(sizes, large_steps=args.large_steps)
    limit = raise_fd_limit(max(sizes.many_clients, sizes.reads_clients) + 256)
    if limit < max(sizes.many_clients, sizes.reads_clients) + 64:
        print("open-file limit %d is too low for %d clients" % (limit, sizes.many_clients), file=sys.stderr)
        return 2
    header = ["Live updates of expman-tornado (%s run, watcher %s, logger flush_interval_ms=%d)"
              % ("quick" if args.quick else "full", args.watcher, args.flush_ms)] + machine_description()
    for line in header:
        print(line, flush=True)

    temp = tempfile.mkdtemp(prefix="expman-bench-live-")
    store = os.path.join(temp, "store")
    os.makedirs(os.path.join(store, EXPERIMENT))
    results = Results()
    server = None
    context = None
    try:
        server = Server(store, args.watcher, temp)
        info = await server.wait_ready()
        print("server pid %d on 127.0.0.1:%d, watcher %s; store %s"
              % (server.pid, server.port, info["watcher"], store), flush=True)
        context = Context(temp, store, server, sizes, args.flush_ms)
        measurements = [("idle", measure_idle), ("latency", measure_latency), ("updates", measure_updates)]
        for name, measure in measurements:
            if name not in args.only:
                continue
            print("%s ..." % name, flush=True)
            started = time.monotonic()
            try:
                await measure(context, results)
                print("%s took %.0f s" % (name, time.monotonic() - started), flush=True)
            except (RuntimeError, OSError, asyncio.TimeoutError) as exc:
                # One failed measurement must not lose the figures of the others.
                results.add(name, "failed: %s" % (str(exc).splitlines()[0] if str(exc) else type(exc).__name__))
                server.check_alive()
        small, large = context.update_costs.get(SMALL_STEPS), context.update_costs.get(sizes.large_steps)
        if small is not None and large is not None:
            results.add("update at step %s vs step 1,000: latency, server CPU" % format(sizes.large_steps, ","),
                        "%.1f vs %.1f ms, %.1f vs %.1f ms"
                        % (large[0] * 1e3, small[0] * 1e3, large[1] * 1e3, small[1] * 1e3),
                        "about the same",
                        all(big <= 2 * little + 0.005 for big, little in zip(large, small)))
    finally:
        if context is not None:
            for writer in context.writers:
                await writer.stop()
        if server is not None:
            server.stop()
        if args.keep:
            print("kept %s" % temp)
        else:
            shutil.rmtree(temp, ignore_errors=True)
        print_table(results, header + ["load average at the end: %s" % load_average()])
    return 0


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="small sizes (50 clients, 5 s idle, 50,000-step run): about a minute")
    parser.add_argument("--watcher", choices=("inotify", "poll", "auto"), default="inotify",
                        help="the server's --watcher (default: inotify)")
    parser.add_argument("--flush-ms", type=int, default=20,
                        help="the logger's flush_interval_ms (default: 20)")
    parser.add_argument("--large-steps", type=int, default=None,
                        help="steps of the large live run (default: 1,000,000; 50,000 with --quick)")
    parser.add_argument("--only", nargs="+", choices=("idle", "latency", "updates"),
                        default=["idle", "latency", "updates"], help="run only these measurements")
    parser.add_argument("--keep", action="store_true", help="keep the temporary store and logs")
    args = parser.parse_args(argv)
    if args.large_steps is not None and args.large_steps <= SMALL_STEPS:
        parser.error("--large-steps must be more than %d" % SMALL_STEPS)
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--writer"]:
        writer_main(argv[1], argv[2], int(argv[3]))
        return 0
    args = parse_args(argv)

    async def run() -> int:
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        return await run_benchmarks(args)

    return asyncio.run(run())


if __name__ == "__main__":
    sys.exit(main())
