"""Load test of the run stream: many SSE clients, half of them dropped and reconnected.

    python benchmarks/sse_load.py                          # 500 clients, 3,000 steps
    python benchmarks/sse_load.py --clients 50 --steps 300 # a quick check

The script writes a store into a temporary folder and starts ``python -m
expman_tornado STORE`` on 127.0.0.1 and a free port. A writer process, the
real logger (``expman.Experiment``), writes one run step by step. The clients
are raw HTTP/1.1 connections of this one asyncio process, each streaming
``…/runs/:run/live?since_step=-1``. While the run is written, half of the
clients are dropped abruptly (a TCP reset, no goodbye) and reconnect with
``Last-Event-ID`` set to the last event id they had.

It checks that every client ends with every step exactly once, in order, and
that the server's open file descriptors (``/proc/PID/fd``) and resident memory
(``VmRSS`` in ``/proc/PID/status``) return near their values before the
clients came. Every wait has a deadline, and the script ends only the
processes it started, by pid, also when it fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import resource
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field

EXPERIMENT = "load"
RUN = "train"

#: How far the server's figures may stay above their baseline once every client has gone.
FD_TOLERANCE = 8
RSS_TOLERANCE_MB = 64.0


# The writer: a child process that logs with the real logger.


def write_run(root: str, run_name: str, steps: int, pause: float) -> None:
    """Create the run, say ``ready``, wait for ``go`` on stdin, write the steps, then close."""
    from expman import Experiment

    run = Experiment(EXPERIMENT, run_name=run_name, base_dir=root, redirect_console=False,
                     system_metrics_interval_secs=0, capture_provenance=False)
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        run.close()
        return
    for step in range(steps):
        run.log_vector({"loss": 1.0 / (step + 1), "step_sent_at": time.time()}, step=step)
        time.sleep(pause)
    run.close()
    print("done", flush=True)


# The server and its figures.


@dataclass
class Server:
    process: subprocess.Popen
    url: str
    log: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.process.pid

    def fds(self) -> int:
        return len(os.listdir("/proc/%d/fd" % self.pid))

    def rss_mb(self) -> float:
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS in /proc/%d/status" % self.pid)

    def figures(self) -> tuple[int, float]:
        return self.fds(), self.rss_mb()


def start_server(root: str, deadline: float) -> Server:
    command = [sys.executable, "-m", "expman_tornado", root, "--ip=127.0.0.1", "--port=0"]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    server = Server(process, "")
    started = threading.Event()

    def drain() -> None:
        for line in process.stderr:
            server.log.append(line.rstrip())
            if "Dashboard and API at " in line and not server.url:
                server.url = line.split("Dashboard and API at ", 1)[1].strip().rstrip("/")
                started.set()
        started.set()

    threading.Thread(target=drain, daemon=True).start()
    if not started.wait(max(0.0, deadline - time.monotonic())) or not server.url:
        process.kill()
        raise RuntimeError("the server did not start:\n" + "\n".join(server.log[-20:]))

    # The URL is logged before the live hub starts: wait for the hub, and let the
    # server read the store once, so the baseline includes its watcher and thread pools.
    while not get_json(server.url + "/api/server").get("live"):
        if time.monotonic() > deadline:
            raise TimeoutError("timed out waiting for the server's live updates")
        time.sleep(0.1)
    get_json(server.url + "/api/experiments/%s/runs" % EXPERIMENT)
    return server


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


# The clients.


@dataclass
class Client:
    """One SSE client; it keeps what it received across reconnections."""

    number: int
    steps: list[int] = field(default_factory=list)
    last_id: str | None = None
    connections: int = 0
    snapshot: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task | None = None
    writer: asyncio.StreamWriter | None = None

    @property
    def last_step(self) -> int:
        return self.steps[-1] if self.steps else -1


async def read_chunks(reader: asyncio.StreamReader):
    """Yield the body chunks of a chunked HTTP/1.1 reply."""
    while True:
        size_line = await reader.readline()
        if not size_line:
            return
        size = int(size_line.split(b";")[0].strip() or b"0", 16)
        if size == 0:
            return
        data = await reader.readexactly(size + 2)
        yield data[:-2]


async def stream_client(client: Client, host: str, port: int, path: str) -> None:
    """Stream the run's events into ``client`` until the connection ends."""
    reader, writer = await asyncio.open_connection(host, port, limit=64 << 20)
    client.writer = writer
    client.connections += 1
    headers = "GET %s HTTP/1.1\r\nHost: %s:%d\r\nAccept: text/event-stream\r\n" % (path, host, port)
    if client.last_id is not None:
        headers += "Last-Event-ID: %s\r\n" % client.last_id
    writer.write((headers + "\r\n").encode())
    try:
        status = await reader.readline()
        if b" 200 " not in status:
            raise RuntimeError("client %d got %r" % (client.number, status))
        while (await reader.readline()) not in (b"\r\n", b""):
            pass
        buffer = b""
        async for chunk in read_chunks(reader):
            buffer += chunk
            while b"\n\n" in buffer:
                event, buffer = buffer.split(b"\n\n", 1)
                handle_event(client, event)
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


def handle_event(client: Client, event: bytes) -> None:
    name = event_id = None
    data = b""
    for line in event.split(b"\n"):
        if line.startswith(b"event: "):
            name = line[7:].decode()
        elif line.startswith(b"id: "):
            event_id = line[4:].decode()
        elif line.startswith(b"data: "):
            data = line[6:]
    if name == "Snapshot":
        client.snapshot.set()
    elif name == "MetricsUpdated":
        client.steps.extend(row["step"] for row in json.loads(data)["rows"])
    if event_id is not None:
        client.last_id = event_id


def drop_abruptly(client: Client) -> None:
    """Close the client's socket with a TCP reset, as a client that crashes or loses its network."""
    assert client.writer is not None
    sock = client.writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.writer.transport.abort()


async def wait_until(condition, deadline: float, what: str, interval: float = 0.1) -> None:
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("timed out waiting for " + what)
        await asyncio.sleep(interval)


async def settle(server: Server, baseline: tuple[int, float], deadline: float) -> tuple[int, float]:
    """Wait until the server's fds are back near the baseline; return its figures then."""
    end = min(deadline, time.monotonic() + 15)
    while time.monotonic() < end and server.fds() > baseline[0] + FD_TOLERANCE:
        await asyncio.sleep(0.2)
    await asyncio.sleep(1.0)
    return server.figures()


async def run_load(server: Server, writer: subprocess.Popen, run_name: str, args, deadline: float) -> dict:
    host, port = "127.0.0.1", int(server.url.rsplit(":", 1)[1])
    path = "/api/experiments/%s/runs/%s/live?since_step=-1" % (EXPERIMENT, run_name)
    baseline = server.figures()

    clients = [Client(number) for number in range(args.clients)]
    started = time.monotonic()
    for client in clients:
        client.task = asyncio.ensure_future(stream_client(client, host, port, path))
    await wait_until(lambda: all(c.snapshot.is_set() for c in clients), deadline, "every Snapshot")
    connect_seconds = time.monotonic() - started
    connected = server.figures()

    writer.stdin.write("go\n")
    writer.stdin.flush()
    third = args.steps // 3
    await wait_until(lambda: min(c.last_step for c in clients) >= third, deadline, "a third of the steps")

    # Drop half the clients at once, then reconnect each after a short random pause.
    dropped = clients[::2]
    for client in dropped:
        drop_abruptly(client)
    await asyncio.gather(*(client.task for client in dropped))
    await asyncio.sleep(0.5)
    for client in dropped:
        client.snapshot.clear()
        client.task = asyncio.ensure_future(reconnect(client, host, port, path))
    await wait_until(lambda: all(c.snapshot.is_set() for c in dropped), deadline, "reconnections")
    peak = server.figures()

    last = args.steps - 1
    await wait_until(lambda: all(c.last_step >= last for c in clients), deadline, "the last step")
    stream_seconds = time.monotonic() - started
    during = server.figures()

    for client in clients:
        assert client.writer is not None
        client.writer.close()
    await asyncio.gather(*(client.task for client in clients), return_exceptions=True)
    after = await settle(server, baseline, deadline)
    complete = sum(1 for c in clients if c.steps == list(range(args.steps)))
    return {
        "baseline": baseline, "connected": connected, "peak": peak, "during": during,
        "after": after, "complete": complete, "connect_seconds": connect_seconds,
        "stream_seconds": stream_seconds, "reconnected": len(dropped),
        "bad": [(c.number, len(c.steps), len(set(c.steps))) for c in clients
                if c.steps != list(range(args.steps))][:5],
    }


async def reconnect(client: Client, host: str, port: int, path: str) -> None:
    await asyncio.sleep(random.uniform(0.0, 0.5))
    await stream_client(client, host, port, path)


def start_writer(root: str, run_name: str, args) -> subprocess.Popen:
    """Start the writer process and wait until its run exists."""
    command = [sys.executable, __file__, "--writer", root, "--run", run_name, "--steps", str(args.steps),
               "--pause", str(args.pause)]
    writer = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    if writer.stdout.readline().strip() != "ready":
        writer.kill()
        raise RuntimeError("the writer did not start")
    return writer


def raise_fd_limit() -> tuple[int, int]:
    """Raise this process's open file limit to its hard limit; the server inherits it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def report(results: dict, args, baseline: tuple[int, float]) -> bool:
    """Print one round's figures; return whether its checks passed."""
    baseline_fds, baseline_rss = baseline
    after_fds, after_rss = results["after"]
    fds_ok = after_fds <= baseline_fds + FD_TOLERANCE
    rss_ok = after_rss <= baseline_rss + RSS_TOLERANCE_MB
    events_ok = results["complete"] == args.clients
    print("clients: %d, steps: %d, dropped and reconnected: %d"
          % (args.clients, args.steps, results["reconnected"]))
    print("all connected in %.1f s; every step at every client %.1f s after the first connection"
          % (results["connect_seconds"], results["stream_seconds"]))
    print("%-28s %8s %10s" % ("server", "open fds", "RSS MiB"))
    for label, key in (("before clients", "baseline"), ("clients connected", "connected"),
                       ("after reconnections", "peak"), ("last step delivered", "during"),
                       ("clients gone", "after")):
        fds, rss = results[key]
        print("%-28s %8d %10.1f" % (label, fds, rss))
    print("fds back near the first baseline (+%d allowed): %s" % (FD_TOLERANCE, "yes" if fds_ok else "NO"))
    print("RSS back near the first baseline (+%.0f MiB allowed): %s"
          % (RSS_TOLERANCE_MB, "yes" if rss_ok else "NO"))
    print("clients with every step exactly once, in order: %d of %d" % (results["complete"], args.clients))
    if results["bad"]:
        print("first clients that differ (number, steps received, distinct steps):", results["bad"])
    return fds_ok and rss_ok and events_ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=500, help="SSE clients (default 500)")
    parser.add_argument("--steps", type=int, default=3000, help="steps the writer logs (default 3000)")
    parser.add_argument("--pause", type=float, default=0.005,
                        help="seconds between two steps of the writer (default 0.005)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="rounds, each on a new run with all clients anew (default 2); memory "
                             "that grows from round to round is a leak, memory kept after the "
                             "first round is the allocator's")
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="seconds the whole test may take (default 600)")
    parser.add_argument("--run", default=RUN, help=argparse.SUPPRESS)
    parser.add_argument("--writer", metavar="ROOT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.writer:
        write_run(args.writer, args.run, args.steps, args.pause)
        return 0
    if not 1 <= args.clients <= 2000 or not 3 <= args.steps <= 1_000_000 or not 1 <= args.rounds <= 10:
        parser.error("--clients must be 1 to 2000, --steps 3 to 1,000,000 and --rounds 1 to 10")

    limit = raise_fd_limit()
    deadline = time.monotonic() + args.timeout
    folder = tempfile.mkdtemp(prefix="expman-sse-load-")
    root = os.path.join(folder, "store")
    writer = server = None
    passed = True
    try:
        print("machine: %s, %d cores, Python %s; open file limit %d"
              % (platform.machine(), os.cpu_count() or 0, platform.python_version(), limit[0]))
        baseline = None
        for number in range(1, args.rounds + 1):
            run_name = "%s-%d" % (args.run, number)
            writer = start_writer(root, run_name, args)
            if server is None:
                server = start_server(root, deadline)
            results = asyncio.run(asyncio.wait_for(run_load(server, writer, run_name, args, deadline),
                                                   max(1.0, deadline - time.monotonic())))
            writer.wait(max(1.0, deadline - time.monotonic()))
            baseline = baseline or results["baseline"]
            print("\nround %d" % number)
            passed = report(results, args, baseline) and passed
        return 0 if passed else 1
    finally:
        for process in (server.process if server else None, writer):
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(10)
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
