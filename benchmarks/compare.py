"""Time expman-tornado and the Rust expman-rs server side by side on one store.

    python benchmarks/compare.py                          # about 4 minutes on 2 cores, most of it the Rust server
    python benchmarks/compare.py --only ours --warm 5     # our server alone

The store comes from ``benchmarks/stores.py`` (written once into ``--folder``,
then reused). For each group of measurements the script starts a new server
process on 127.0.0.1 on a free port. The first request of a group is "cold":
the first after the server started, with the files in the page cache. "Warm" is
the median of the ``--warm`` requests after it. Our runs listing is timed cold
twice: at the first start ever, with an empty cache folder (no summary index),
and at a second start with the index that the first one wrote. A third start,
again without an index, waits until our server has read every run's summary in
the background (``read_summaries_at_start``) and then times its first listing.
The metric requests are timed on a server started with that background read
off, so that it does not share the cores with them. One client (this process,
``http.client``, one connection per request) sends the requests one after
another and reads each reply whole.

Memory is the server's ``VmRSS`` (resident now) and ``VmHWM`` (peak resident)
from ``/proc/PID/status``. The floor is what polars alone takes in this
process for the same work on the same file.

Every wait has a deadline, and the script ends only the server processes it
started, by pid, also when a measurement fails.
"""

from __future__ import annotations

import argparse
import glob
import http.client
import importlib.metadata
import json
import os
import platform
import re
import signal
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stores  # noqa: E402  (the sibling script, imported as a module)

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
RUST_SERVER = os.path.join(REPO, "..", "shared", "anchor", "exp")

#: Seconds a server may take to accept connections after it started.
START_TIMEOUT = 30.0
#: Seconds one request may take (the Rust server's full JSON takes about 9 s here).
REQUEST_TIMEOUT = 180.0
#: Seconds of warm requests per measurement once three are done.
WARM_BUDGET = 20.0
#: Seconds our server may take to write its summary index after the first runs listing.
INDEX_TIMEOUT = 60.0

LARGE = "/api/experiments/%s/runs/%s/metrics" % (stores.LARGE_EXPERIMENT, stores.LARGE_RUN)
RUNS = "/api/experiments/%s/runs" % stores.MANY_EXPERIMENT


@dataclass
class Server:
    """A server process started by this script, and what it serves."""

    name: str
    process: subprocess.Popen
    port: int
    full_json_query: str
    log_path: str
    #: Where this start's lines begin in the log file, which earlier starts share.
    log_start: int = 0

    def status(self) -> dict[str, int]:
        """Return VmRSS and VmHWM in KiB (0 when the process is gone)."""
        found = {"VmRSS": 0, "VmHWM": 0}
        try:
            with open("/proc/%d/status" % self.process.pid) as f:
                for line in f:
                    key, _, value = line.partition(":")
                    if key in found:
                        found[key] = int(value.split()[0])
        except OSError:
            pass
        return found


@dataclass
class Reply:
    seconds: float
    size: int
    body: bytes = field(repr=False, default=b"")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_command(name: str, store: str, port: int, cache_dir: str = "", read_summaries: bool = True) -> list[str]:
    if name == "ours":
        return [sys.executable, "-m", "expman_tornado", store, "--port", str(port), "--cache-dir", cache_dir,
                "--ExpmanTornado.read_summaries_at_start=%s" % read_summaries]
    return [os.path.realpath(RUST_SERVER), "serve", store, "--host", "127.0.0.1", "-p", str(port)]


@contextmanager
def running_server(name: str, store: str, folder: str, cache_dir: str = "", read_summaries: bool = True):
    """Start a server, wait until it accepts connections, and end it (by pid) afterwards.

    ``cache_dir`` is our server's summary index folder; empty: no index.
    ``read_summaries`` false starts ours without reading run summaries in the background.
    """
    port = free_port()
    log_path = os.path.join(folder, "%s-server.log" % name)
    log_start = os.path.getsize(log_path) if os.path.exists(log_path) else 0
    with open(log_path, "ab") as log_file:
        process = subprocess.Popen(server_command(name, store, port, cache_dir, read_summaries), stdout=log_file,
                                   stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    query = "format=json" if name == "ours" else "max_points=0"
    server = Server(name, process, port, query, log_path, log_start)
    try:
        wait_for_port(server)
        yield server
    finally:
        stop(process)


def wait_for_port(server: Server) -> None:
    """Wait until the port accepts a TCP connection; no HTTP request, so no file is read before the cold one."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError("%s server exited with code %s; see %s"
                               % (server.name, server.process.returncode, server.log_path))
        try:
            with socket.create_connection(("127.0.0.1", server.port), timeout=1.0):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError("%s server did not accept connections within %.0f s" % (server.name, START_TIMEOUT))


def stop(process: subprocess.Popen) -> None:
    """End a process this script started: SIGTERM, then SIGKILL after 10 s."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def get(server: Server, path: str) -> Reply:
    """Send one GET and read the whole reply; raise on a status other than 200."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=REQUEST_TIMEOUT)
    try:
        started = time.perf_counter()
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        seconds = time.perf_counter() - started
    finally:
        connection.close()
    if response.status != 200:
        raise RuntimeError("%s server: GET %s returned %d: %s" % (server.name, path, response.status, body[:200]))
    return Reply(seconds, len(body), body)


def cold_and_warm(server: Server, path: str, warm: int) -> dict:
    """Time the first request and the median of up to ``warm`` after it.

    Once three warm requests are done, no new one starts after WARM_BUDGET
    seconds, so a route that takes seconds per request does not take minutes.
    """
    cold = get(server, path)
    warm_times: list[float] = []
    deadline = time.monotonic() + WARM_BUDGET
    while len(warm_times) < warm and (len(warm_times) < 3 or time.monotonic() < deadline):
        warm_times.append(get(server, path).seconds)
    return {"cold": cold.seconds, "warm": statistics.median(warm_times), "bytes": cold.size, "body": cold.body}


def wait_for_summaries(server: Server) -> float:
    """Wait until our server logs that it read every run's summary; return the seconds it logged."""
    deadline = time.monotonic() + INDEX_TIMEOUT
    while time.monotonic() < deadline:
        with open(server.log_path, "rb") as log_file:
            log_file.seek(server.log_start)
            match = re.search(rb"Summaries of [0-9,]+ runs? ready after ([0-9.]+) s", log_file.read())
        if match:
            return float(match.group(1))
        time.sleep(0.1)
    raise TimeoutError("%s server did not read its summaries within %.0f s" % (server.name, INDEX_TIMEOUT))


def wait_for_index(cache_dir: str) -> None:
    """Wait until our server has written a summary index file into ``cache_dir``.

    The server writes a temporary file and renames it, so a file with the
    index's name is whole.
    """
    deadline = time.monotonic() + INDEX_TIMEOUT
    while time.monotonic() < deadline:
        if any(name.startswith("summaries-") for name in os.listdir(cache_dir)):
            return
        time.sleep(0.1)
    raise TimeoutError("no summary index in %s within %.0f s" % (cache_dir, INDEX_TIMEOUT))


def load_average() -> str:
    return "%.2f %.2f %.2f" % os.getloadavg()


def measure_server(name: str, store: str, folder: str, warm: int, full_repeats: int) -> dict:
    """Return the figures of one server: runs listing, downsampled metrics, full JSON and memory."""
    results: dict = {"load": []}
    cache_dir = tempfile.mkdtemp(prefix="index-", dir=folder) if name == "ours" else ""
    try:
        with running_server(name, store, folder, cache_dir) as server:
            results["rss_start_kib"] = server.status()["VmRSS"]
            runs = cold_and_warm(server, RUNS, warm)
            results["runs"] = {key: value for key, value in runs.items() if key != "body"}
            results["runs"]["count"] = len(json.loads(runs["body"]))
            results["load"].append(load_average())
            if cache_dir:
                wait_for_index(cache_dir)
        if cache_dir:
            # A second start, with the summary index the first one wrote.
            with running_server(name, store, folder, cache_dir) as server:
                results["runs"]["cold_indexed"] = get(server, RUNS).seconds
                results["load"].append(load_average())
            # A first start again (no index), its first listing sent once the background read is done.
            with running_server(name, store, folder) as server:
                results["runs"]["background_read"] = wait_for_summaries(server)
                results["runs"]["after_background_read"] = get(server, RUNS).seconds
                results["load"].append(load_average())
    finally:
        if cache_dir:
            shutil.rmtree(cache_dir, ignore_errors=True)

    # Without the background read of 5,000 run summaries, which would share the cores with these requests.
    with running_server(name, store, folder, read_summaries=False) as server:
        downsampled = cold_and_warm(server, LARGE + "?max_points=2000", warm)
        results["downsampled"] = {key: value for key, value in downsampled.items() if key != "body"}
        results["downsampled"]["rows"] = len(json.loads(downsampled["body"]))
        results["load"].append(load_average())

        full_times = []
        for _ in range(full_repeats):
            reply = get(server, LARGE + "?" + server.full_json_query)
            full_times.append(reply.seconds)
            results["full_bytes"] = reply.size
            del reply
        results["full"] = {"first": full_times[0], "median": statistics.median(full_times)}
        time.sleep(1.0)  # Let the server finish freeing the reply before memory is read.
        memory = server.status()
        results["rss_after_full_kib"] = memory["VmRSS"]
        results["hwm_kib"] = memory["VmHWM"]
        results["load"].append(load_average())
    return results


def floors(store: str, warm: int) -> dict:
    """Time polars alone on the same files, in this process."""
    import polars as pl

    path = os.path.join(store, stores.LARGE_EXPERIMENT, stores.LARGE_RUN, "vectors.parquet")
    read_times, json_times = [], []
    for _ in range(max(1, min(warm, 3))):
        started = time.perf_counter()
        frame = pl.read_parquet(path)
        read_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        frame.write_json()
        json_times.append(time.perf_counter() - started)
        del frame
    run_files = glob.glob(os.path.join(store, stores.MANY_EXPERIMENT, "*", "*"))
    started = time.perf_counter()
    for name in run_files:
        os.stat(name)
    stat_seconds = time.perf_counter() - started
    return {"read_parquet": statistics.median(read_times), "write_json": statistics.median(json_times),
            "read_and_write_json": statistics.median(read_times) + statistics.median(json_times),
            "stat_run_files": stat_seconds, "run_files": len(run_files)}


def milliseconds(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 10:
        return "%.0f ms" % (seconds * 1000)
    return "%.1f s" % seconds


def mebibytes(kib: int | None) -> str:
    return "-" if kib is None else "%.0f MiB" % (kib / 1024)


def ratio(ours: float | None, rust: float | None) -> str:
    if not ours or not rust:
        return "-"
    return "%.2f" % (ours / rust)


def table(results: dict, floor: dict | None) -> str:
    ours, rust = results.get("ours"), results.get("rust")

    def pick(server: dict | None, *keys):
        value = server
        for key in keys:
            if value is None:
                return None
            value = value.get(key)
        return value

    rows = [
        ("`metrics?max_points=2000`, 1M×8, warm", "downsampled", "warm", "time",
         floor and floor["read_parquet"], "polars read_parquet"),
        ("`metrics?max_points=2000`, 1M×8, cold", "downsampled", "cold", "time",
         floor and floor["read_parquet"], "polars read_parquet"),
        ("full JSON, 1M×8, first", "full", "first", "time",
         floor and floor["read_and_write_json"], "polars read_parquet + write_json"),
        ("full JSON, 1M×8, median", "full", "median", "time",
         floor and floor["write_json"], "polars write_json"),
        ("RSS after full JSON", "rss_after_full_kib", None, "memory", None, ""),
        ("peak RSS (VmHWM) serving the large run", "hwm_kib", None, "memory", None, ""),
        ("`runs`, 5,000 runs, warm", "runs", "warm", "time",
         floor and floor["stat_run_files"], "os.stat of the %s entries of the run folders" % (floor or {}).get("run_files")),
        ("`runs`, 5,000 runs, cold, first start (no index)", "runs", "cold", "time", None, ""),
        ("`runs`, 5,000 runs, cold, later start (index)", "runs", "cold_indexed", "time", None, ""),
        ("`runs`, 5,000 runs, first start, background read of the summaries", "runs", "background_read", "time",
         None, ""),
        ("`runs`, 5,000 runs, first start, first listing after that read", "runs", "after_background_read", "time",
         None, ""),
        ("RSS at start", "rss_start_kib", None, "memory", None, ""),
    ]
    lines = ["| measurement | ours | Rust | ratio | floor |", "|---|---:|---:|---:|---|"]
    for label, group, key, unit, floor_value, floor_label in rows:
        keys = (group, key) if key else (group,)
        mine, theirs = pick(ours, *keys), pick(rust, *keys)
        if key in ("cold_indexed", "after_background_read"):
            theirs = pick(rust, group, "cold")  # The Rust server keeps nothing between starts.
        show = milliseconds if unit == "time" else mebibytes
        floor_text = "%s (%s)" % (milliseconds(floor_value), floor_label) if floor_value is not None else ""
        lines.append("| %s | %s | %s | %s | %s |" % (label, show(mine), show(theirs), ratio(mine, theirs), floor_text))
    return "\n".join(lines)


def machine() -> str:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions = []
    for package in ("tornado", "pyarrow", "polars", "orjson", "expman-rs"):
        try:
            versions.append("%s %s" % (package, importlib.metadata.version(package)))
        except importlib.metadata.PackageNotFoundError:
            versions.append("%s missing" % package)
    try:
        commit = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        commit, dirty = "unknown", ""
    return "nproc %d, %s, Python %s, %s, commit %s%s" % (
        os.cpu_count() or 0, cpu, platform.python_version(), ", ".join(versions), commit,
        " with uncommitted changes" if dirty else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", default="/tmp/expman-bench", help="folder of the store (see stores.py)")
    parser.add_argument("--only", choices=("ours", "rust"), help="measure one server only")
    parser.add_argument("--warm", type=int, default=9, help="warm requests per measurement (their median)")
    parser.add_argument("--full-repeats", type=int, default=3, help="full JSON requests (the Rust server takes ~9 s each)")
    parser.add_argument("--json", help="also write the raw figures to this file")
    args = parser.parse_args(argv)

    store = stores.write_store(args.folder, 1_000_000, 8, 5000, 5, 2)
    results = {}
    for name in ("ours", "rust"):
        if args.only in (None, name):
            print("measuring %s (load average %s)" % (name, load_average()), flush=True)
            results[name] = measure_server(name, store, args.folder, args.warm, args.full_repeats)
    floor = floors(store, args.warm)
    print()
    print(machine())
    for name, figures in results.items():
        print("%s: load average during the groups: %s; full JSON %d bytes; runs %d; downsampled rows %d"
              % (name, " / ".join(figures["load"]), figures["full_bytes"], figures["runs"]["count"],
                 figures["downsampled"]["rows"]))
    print()
    print(table(results, floor))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"results": results, "floor": floor, "machine": machine()}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
