"""Write the benchmark stores with the real logger, or reuse them from an earlier call.

    python benchmarks/stores.py --folder /tmp/expman-bench      # about 35 s on 2 cores the first time

The store is ``FOLDER/store`` and contains two experiments:

- ``large``: one closed run, ``steps-1m``, of 1,000,000 steps with 8 float64
  metrics, so its rows are in ``vectors.parquet``;
- ``many``: 5,000 closed runs, each with 4 params (one of them nested) and 5
  steps of 3 metrics.

Everything is written through ``expman.Experiment`` (``redirect_console=False,
system_metrics_interval_secs=0, capture_provenance=False``), the way users'
runs are written. ``FOLDER/store.json`` records the sizes once the store is
whole; a later call with the same sizes reuses the store, any other call writes
it again. The 5,000 runs are written by ``--processes`` worker processes, each
with its own share of run numbers.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor

LARGE_EXPERIMENT = "large"
LARGE_RUN = "steps-1m"
MANY_EXPERIMENT = "many"

#: Upper bound on the seconds one writer process may take, so a stuck logger ends the call.
WRITE_TIMEOUT = 900.0


def logger_options() -> dict:
    return {"redirect_console": False, "system_metrics_interval_secs": 0, "capture_provenance": False}


def write_large_run(store: str, steps: int, metrics: int) -> None:
    """Write one closed run of ``steps`` steps of ``metrics`` float64 metrics."""
    from expman import Experiment

    rng = random.Random(1)
    names = ["metric_%d" % i for i in range(metrics)]
    run = Experiment(LARGE_EXPERIMENT, run_name=LARGE_RUN, base_dir=store, **logger_options())
    run.log_params({"lr": 0.001, "steps": steps})
    for step in range(steps):
        decay = 1.0 / (1.0 + step / 1000.0)
        row = {name: decay * (index + 1) + rng.random() * 0.01 + math.sin(step / (50.0 + index))
               for index, name in enumerate(names)}
        run.log_vector(row, step=step)
    run.close()


def write_small_runs(store: str, first: int, count: int, steps: int) -> int:
    """Write runs number ``first`` to ``first + count - 1`` of the many-runs experiment."""
    from expman import Experiment

    rng = random.Random(first)
    for number in range(first, first + count):
        run = Experiment(MANY_EXPERIMENT, run_name="run-%05d" % number, base_dir=store, **logger_options())
        run.log_params({
            "lr": round(rng.uniform(1e-4, 1e-2), 6),
            "batch_size": rng.choice([16, 32, 64, 128]),
            "seed": number,
            "optimizer": {"name": rng.choice(["adam", "sgd", "adamw"]), "wd": 0.01},
        })
        for step in range(steps):
            run.log_vector({
                "loss": 1.0 / (step + 1) + rng.random() * 0.1,
                "accuracy": step / steps + rng.random() * 0.05,
                "lr": 0.001,
            }, step=step)
        run.close()
    return count


def write_store(folder: str, large_steps: int, large_metrics: int, runs: int,
                run_steps: int, processes: int) -> str:
    """Return the store under ``folder``, writing it first unless a whole one with these sizes is there."""
    store = os.path.join(folder, "store")
    manifest_path = os.path.join(folder, "store.json")
    sizes = {"large_steps": large_steps, "large_metrics": large_metrics, "runs": runs, "run_steps": run_steps}
    try:
        with open(manifest_path) as f:
            if json.load(f).get("sizes") == sizes and os.path.isdir(store):
                return store
    except (OSError, ValueError):
        pass

    if os.path.exists(manifest_path):
        os.remove(manifest_path)
    shutil.rmtree(store, ignore_errors=True)
    os.makedirs(store)
    timings = {}
    processes = max(1, min(processes, runs or 1))
    with ProcessPoolExecutor(max_workers=processes + 1) as pool:
        started = time.perf_counter()
        large = pool.submit(write_large_run, store, large_steps, large_metrics)
        share = math.ceil(runs / processes) if runs else 0
        small = [pool.submit(write_small_runs, store, first, min(share, runs - first), run_steps)
                 for first in range(0, runs, share or 1)]
        written = sum(future.result(timeout=WRITE_TIMEOUT) for future in small)
        timings["many_runs_secs"] = round(time.perf_counter() - started, 1)
        large.result(timeout=WRITE_TIMEOUT)
        timings["large_run_secs"] = round(time.perf_counter() - started, 1)
    if written != runs:
        raise RuntimeError("wrote %d of %d runs" % (written, runs))
    with open(manifest_path, "w") as f:
        json.dump({"sizes": sizes, "timings": timings, "processes": processes}, f, indent=2)
    return store


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", default="/tmp/expman-bench", help="folder of the store, reused when complete")
    parser.add_argument("--large-steps", type=int, default=1_000_000, help="steps of the large run")
    parser.add_argument("--large-metrics", type=int, default=8, help="metrics of the large run")
    parser.add_argument("--runs", type=int, default=5000, help="runs of the many-runs experiment")
    parser.add_argument("--run-steps", type=int, default=5, help="steps of each of those runs")
    parser.add_argument("--processes", type=int, default=2, help="processes writing the small runs")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    store = write_store(args.folder, args.large_steps, args.large_metrics, args.runs, args.run_steps,
                        args.processes)
    print("store: %s (%.1f s)" % (store, time.perf_counter() - started))
    return 0


if __name__ == "__main__":
    sys.exit(main())
