"""Measure the polling watcher's pass time and change -> client latency on 100,000 files.

    python benchmarks/polling.py             # about 100,000 files: 4 to 5 minutes on 2 cores
    python benchmarks/polling.py --quick     # about 5,000 files: under a minute

The script writes a store into a temporary folder and deletes it at the end:

- experiment ``quiet``: ``--runs`` closed runs written by the real logger
  (``expman.Experiment``: params and 5 steps of 3 metrics), each with
  ``--artifacts`` files in ``artifacts/plots``, ``artifacts/checkpoints`` and
  ``artifacts/samples/epoch-N``. Their files and folders are then dated a day
  back with ``os.utime``, so the watcher counts them as quiet.
- experiment ``bench``: ``--live-runs`` runs kept open by logger processes
  (the writer of ``benchmarks/live.py``), each with 100 steps in its segments.

It then times, in this process, passes of ``StoreScan`` (the polling
watcher's pass) over the unchanged store. It times the full walk that the
watcher made before beside it (``FullWalk`` below: every folder listed, every
file stated), and counts the ``os.stat`` and ``os.scandir``/``os.listdir``
calls of one pass of each. Last, it starts ``python -m expman_tornado STORE
--watcher=poll`` (default poll interval) on 127.0.0.1, measures the server's
CPU over a quiet interval, and the latency from a ``log_vector`` call to the
row's arrival at a client of ``/api/experiments/bench/runs/live-0/live``, and
from the segment's change (seen by an inotify watch in the writer process) to
that arrival. Every wait has a deadline, and the script ends only the processes
it started, by pid.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import shutil
import signal
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import live  # noqa: E402  (the writer process, server handle and SSE clients of benchmarks/live.py)

from expman_tornado.live.watchers import LIVE_SECONDS, SWEEP_PASSES, StoreScan  # noqa: E402

QUIET_EXPERIMENT = "quiet"
LIVE_RUN_STEPS = 100
LOGGER_OPTIONS = {
    "redirect_console": False,
    "system_metrics_interval_secs": 0,
    "capture_provenance": False,
}

#: Upper bound on the seconds one process may take to write its share of the quiet runs.
WRITE_TIMEOUT = 1800.0


@dataclass(frozen=True)
class Sizes:
    runs: int
    artifacts: int  # artifact files per quiet run
    live_runs: int
    scan_passes: int  # passes of StoreScan timed after its baseline
    walk_passes: int  # passes of the full walk timed after its baseline
    quiet_seconds: float  # seconds over which the server's CPU is measured with no writes
    ticks: int  # steps written to the measured live run for the latency


FULL = Sizes(runs=2000, artifacts=46, live_runs=3, scan_passes=20, walk_passes=5,
             quiet_seconds=20.0, ticks=60)
QUICK = Sizes(runs=100, artifacts=46, live_runs=2, scan_passes=10, walk_passes=3,
              quiet_seconds=5.0, ticks=20)


# The store


def write_quiet_runs(store: str, first: int, count: int, artifacts: int) -> int:
    """Write quiet runs number ``first`` to ``first + count - 1`` with their artifacts."""
    from expman import Experiment

    rng = random.Random(first)
    for number in range(first, first + count):
        name = "run-%05d" % number
        run = Experiment(QUIET_EXPERIMENT, run_name=name, base_dir=store, **LOGGER_OPTIONS)
        run.log_params({"lr": round(rng.uniform(1e-4, 1e-2), 6), "seed": number})
        for step in range(5):
            run.log_vector({"loss": 1.0 / (step + 1), "accuracy": step / 5, "lr": 0.001}, step=step)
        run.close()
        write_artifacts(os.path.join(store, QUIET_EXPERIMENT, name, "artifacts"), artifacts)
    return count


def write_artifacts(folder: str, count: int) -> None:
    """Write ``count`` small files: plots, checkpoints, and samples in one folder per epoch."""
    for index in range(count):
        if index % 3 == 0:
            path = os.path.join(folder, "plots", "plot-%03d.csv" % index)
        elif index % 3 == 1:
            path = os.path.join(folder, "checkpoints", "step-%03d.txt" % index)
        else:
            epoch = "epoch-%d" % (index % 4)
            path = os.path.join(folder, "samples", epoch, "sample-%03d.txt" % index)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write("%d\n" % index)


def write_store(store: str, sizes: Sizes, processes: int = 2) -> float:
    """Write the quiet runs in ``processes`` processes and date them a day back.

    Return the seconds taken.
    """
    started = time.perf_counter()
    share = math.ceil(sizes.runs / processes)
    with ProcessPoolExecutor(max_workers=processes) as pool:
        futures = [
            pool.submit(write_quiet_runs, store, first, min(share, sizes.runs - first),
                        sizes.artifacts)
            for first in range(0, sizes.runs, share)
        ]
        written = sum(future.result(timeout=WRITE_TIMEOUT) for future in futures)
    if written != sizes.runs:
        raise RuntimeError("wrote %d of %d runs" % (written, sizes.runs))
    then = time.time() - 86400.0
    for folder, _, files in os.walk(os.path.join(store, QUIET_EXPERIMENT), topdown=False):
        for name in files:
            os.utime(os.path.join(folder, name), (then, then))
        os.utime(folder, (then, then))
    return time.perf_counter() - started


def count_tree(store: str) -> tuple[int, int]:
    """Return the number of folders and of files under the store."""
    folders = files = 0
    for _, _, names in os.walk(store):
        folders += 1
        files += len(names)
    return folders, files


# The full walk: the polling watcher's pass before StoreScan, kept here for comparison.


def snapshot_tree(root: str) -> dict[str, tuple]:
    """Return ``{path: (inode, size, mtime_ns)}`` for the folders and files a store pass covers."""
    seen: dict[str, tuple] = {}
    _stat_into(seen, root)
    for experiment in _entries(root):
        experiment_dir = os.path.join(root, experiment)
        if not _stat_into(seen, experiment_dir) or not os.path.isdir(experiment_dir):
            continue
        for run in _entries(experiment_dir):
            run_dir = os.path.join(experiment_dir, run)
            if not os.path.isdir(run_dir):
                _stat_into(seen, run_dir)
                continue
            _stat_into(seen, run_dir)
            for name in _entries(run_dir):
                path = os.path.join(run_dir, name)
                _stat_into(seen, path)
                if name in ("artifacts", "media") and os.path.isdir(path):
                    for folder, _, files in os.walk(path):
                        for file_name in files:
                            _stat_into(seen, os.path.join(folder, file_name))
    return seen


def changed_paths(previous: dict[str, tuple], current: dict[str, tuple]) -> list[str]:
    changed = [path for path, ident in current.items() if previous.get(path) != ident]
    changed.extend(path for path in previous if path not in current)
    return changed


def _entries(folder: str) -> list[str]:
    try:
        return [name for name in os.listdir(folder) if not name.startswith(".")]
    except OSError:
        return []


def _stat_into(seen: dict[str, tuple], path: str) -> bool:
    try:
        stat = os.stat(path)
    except OSError:
        return False
    seen[path] = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
    return True


class FullWalk:
    """The full walk as a pass: a new snapshot compared with the previous one."""

    def __init__(self, root: str):
        self.root = root
        self.seen: dict[str, tuple] | None = None

    def scan(self) -> list[str]:
        current = snapshot_tree(self.root)
        previous, self.seen = self.seen, current
        return [] if previous is None else changed_paths(previous, current)


# Pass time


class CallCount:
    """Counts calls of os.stat, os.scandir and os.listdir while it is entered."""

    def __enter__(self) -> CallCount:
        self.stats = self.listings = 0
        self._saved = os.stat, os.scandir, os.listdir
        real_stat, real_scandir, real_listdir = self._saved

        def stat(*args, **kwargs):
            self.stats += 1
            return real_stat(*args, **kwargs)

        def scandir(*args, **kwargs):
            self.listings += 1
            return real_scandir(*args, **kwargs)

        def listdir(*args, **kwargs):
            self.listings += 1
            return real_listdir(*args, **kwargs)

        os.stat, os.scandir, os.listdir = stat, scandir, listdir
        return self

    def __exit__(self, *exc_info) -> None:
        os.stat, os.scandir, os.listdir = self._saved


def time_passes(scanner, passes: int) -> dict:
    """Time the baseline pass and ``passes`` more over an unchanged store; count calls of one more.

    Each pass is timed by the wall clock and by this process's CPU time (user
    and system), which other work on the machine skews less.
    """
    started = time.perf_counter()
    scanner.scan()
    baseline = time.perf_counter() - started
    times, cpu_times, changed = [], [], 0
    for _ in range(passes):
        started, cpu_started = time.perf_counter(), time.process_time()
        changed += len(scanner.scan())
        times.append(time.perf_counter() - started)
        cpu_times.append(time.process_time() - cpu_started)
    with CallCount() as calls:
        changed += len(scanner.scan())
    return {"baseline": baseline, "median": statistics.median(times), "max": max(times),
            "cpu": statistics.median(cpu_times), "stats": calls.stats, "listings": calls.listings,
            "changed": changed}


def measure_passes(store: str, sizes: Sizes, results: live.Results) -> None:
    scan = time_passes(StoreScan(store), sizes.scan_passes)
    walk = time_passes(FullWalk(store), sizes.walk_passes)
    for label, figures, passes in (("StoreScan", scan, sizes.scan_passes),
                                   ("full walk (before)", walk, sizes.walk_passes)):
        results.add("pass, %s: median / max of %d, median CPU" % (label, passes),
                    "%.1f / %.1f ms, %.1f ms CPU" % (figures["median"] * 1e3, figures["max"] * 1e3,
                                                     figures["cpu"] * 1e3))
        results.add("pass, %s: calls" % label, "%s stat, %s listings"
                    % (format(figures["stats"], ","), format(figures["listings"], ",")))
        results.add("pass, %s: first pass (baseline)" % label,
                    "%.0f ms" % (figures["baseline"] * 1e3))
        if figures["changed"]:
            results.notes.append(
                "%s reported %d changed paths over its %d passes after the first: the loggers "
                "of the open live runs replace run.yaml even when no step is logged."
                % (label, figures["changed"], passes + 1))
    results.add("pass, full walk / StoreScan: wall, CPU",
                "%.1fx, %.1fx" % (walk["median"] / scan["median"], walk["cpu"] / scan["cpu"]))


# The server


async def wait_for_baseline(server: live.Server, timeout: float) -> float:
    """Wait until the server's polling watcher logged its first pass; return the seconds waited."""
    started = time.monotonic()
    deadline = started + timeout
    while time.monotonic() < deadline:
        server.check_alive()
        if "Polling %s:" % server.store in live.tail(server.log_path, 20_000):
            return time.monotonic() - started
        await asyncio.sleep(0.2)
    raise RuntimeError("the server's polling watcher did not finish its first pass within %.0f s"
                       % timeout)


async def measure_server(store: str, temp: str, sizes: Sizes, writer: live.Writer,
                         results: live.Results) -> None:
    server = live.Server(store, "poll", temp)
    clients = None
    try:
        info = await server.wait_ready(timeout=300.0)
        if info.get("watcher") != "poll":
            raise RuntimeError("the server runs watcher %r, not poll" % info.get("watcher"))
        waited = await wait_for_baseline(server, timeout=300.0)
        results.notes.append("The server's watcher finished its first pass %.1f s after "
                             "/api/server first answered." % waited)

        await asyncio.sleep(2.0)
        start_cpu, start = live.process_cpu_seconds(server.pid), time.monotonic()
        await asyncio.sleep(sizes.quiet_seconds)
        used, elapsed = live.process_cpu_seconds(server.pid) - start_cpu, time.monotonic() - start
        results.add("server CPU, quiet store, %.0f s" % elapsed,
                    "%.1f %% of a core (%.2f s CPU)" % (used / elapsed * 100.0, used))

        path = "/api/experiments/%s/runs/%s/live" % (live.EXPERIMENT, writer.run)
        clients = live.Clients(server.port, path)
        await clients.connect(1, timeout=60.0)
        client = clients.clients[0]
        await asyncio.sleep(1.0)
        client.drain()
        await writer.call("events")
        sent: dict[int, float] = {}
        for _ in range(sizes.ticks):
            reply = await writer.call("tick")
            sent[reply["step"]] = reply["sent_at"]
            # Spread over the poll interval, so that writes do not beat in step with the passes.
            await asyncio.sleep(random.uniform(0.25, 0.45))
        got: dict[int, float] = {}
        deadline = time.monotonic() + 15.0
        while len(got) < len(sent) and time.monotonic() < deadline:
            got.update(live.arrivals(client, sent))
            await asyncio.sleep(0.1)
        server.check_alive()
        changed = live.first_change_after((await writer.call("events"))["events"], sent)
    finally:
        if clients is not None:
            clients.close()
        server.stop()

    from_write = [arrival - sent[step] for step, arrival in got.items()]
    from_file = [arrival - changed[step] for step, arrival in got.items() if step in changed]
    add_latency(results, "write -> client", from_write)
    add_latency(results, "file change -> client", from_file)
    if len(got) < len(sent):
        results.notes.append("%d of %d rows had not arrived 15 s after the last write."
                             % (len(sent) - len(got), len(sent)))


def add_latency(results: live.Results, label: str, samples: list[float]) -> None:
    if not samples:
        results.add(label, "no samples")
        return
    p50, p95 = live.percentile(samples, 50), live.percentile(samples, 95)
    results.add(label + ", p50 / p95 / max", "%.0f / %.0f / %.0f ms (n=%d)"
                % (p50 * 1e3, p95 * 1e3, max(samples) * 1e3, len(samples)))


# Main


async def run_benchmark(args: argparse.Namespace) -> int:
    sizes = QUICK if args.quick else FULL
    if args.runs is not None:
        sizes = Sizes(**{**sizes.__dict__, "runs": args.runs})
    title = ("Polling watcher of expman-tornado (%s run; logger flush_interval_ms=%d for live runs)"
             % ("quick" if args.quick else "full", args.flush_ms))
    header = [title] + live.machine_description()
    for line in header:
        print(line, flush=True)

    temp = tempfile.mkdtemp(prefix="expman-bench-polling-")
    store = os.path.join(temp, "store")
    os.makedirs(os.path.join(store, live.EXPERIMENT))
    # The server's summary index goes with the store, and is deleted with it.
    os.environ["XDG_CACHE_HOME"] = os.path.join(temp, "cache")
    results = live.Results()
    writers: list[live.Writer] = []
    try:
        print("writing %d quiet runs ..." % sizes.runs, flush=True)
        seconds = write_store(store, sizes)
        for number in range(sizes.live_runs):
            writer = await live.Writer.start(store, "live-%d" % number, args.flush_ms, temp)
            writers.append(writer)
            await writer.call("bulk %d" % LIVE_RUN_STEPS)
        folders, files = count_tree(store)
        results.add("store", "%s files, %s folders, %d quiet runs, %d live runs (written in %.0f s)"
                    % (format(files, ","), format(folders, ","), sizes.runs, sizes.live_runs,
                       seconds))
        results.notes.append(
            "StoreScan defaults: a run is swept once every %d passes. A run counts as live for "
            "%.0f s after its last change, and while it has segments."
            % (SWEEP_PASSES, LIVE_SECONDS))
        print("passes ...", flush=True)
        measure_passes(store, sizes, results)
        print("server ...", flush=True)
        await measure_server(store, temp, sizes, writers[0], results)
        for writer in writers:
            await writer.close()
    finally:
        for writer in writers:
            await writer.stop()
        shutil.rmtree(temp, ignore_errors=True)
        live.print_table(results, header + ["load average at the end: %s" % live.load_average()])
    return 0


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="100 quiet runs, about 5,000 files: under a minute")
    parser.add_argument("--runs", type=int, default=None,
                        help="quiet runs, of about 50 files each (default 2,000; 100 with --quick)")
    parser.add_argument("--flush-ms", type=int, default=20,
                        help="the live runs' logger flush_interval_ms (default: 20)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)

    async def run() -> int:
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        return await run_benchmark(args)

    return asyncio.run(run())


if __name__ == "__main__":
    sys.exit(main())
