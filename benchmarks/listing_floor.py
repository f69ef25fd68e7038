"""Print the least time that reading an experiment's runs for a first listing can take in Python.

    python benchmarks/listing_floor.py                       # the 5,000 runs of benchmarks/stores.py
    python benchmarks/listing_floor.py --experiment /path/to/store/exp

A runs listing (``GET /api/experiments/:exp/runs``) holds, for every run, the
fields of run.yaml, the params of config.yaml, the last value of each metric
and its best values with their steps. A listing without cached summaries
therefore reads both YAML files and the metric file of each run. This script times each
of those reads alone, in this process, with nothing of the server around them:

- reading the bytes of every run.yaml and config.yaml;
- parsing them with PyYAML's C loader (the server's YAML reader);
- reading every vectors.parquet in one multi-threaded polars scan, a faster
  read than the server's one file at a time;
- listing every run folder once.

The sum is a floor for the server's first listing at a first start (no summary
index), to set against the Rust server's figure for the same experiment in
``benchmarks/compare.py``. Each step runs ``--repeat`` times; the best time is
printed, with the files in the page cache.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import polars as pl

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stores  # noqa: E402  (the sibling script, imported as a module)

from expman_tornado.store.yamlfile import parse_yaml_mapping  # noqa: E402


def best_of(repeat: int, work) -> float:
    """Return the shortest of ``repeat`` timings of ``work()``, in seconds."""
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        timings.append(time.perf_counter() - started)
    return min(timings)


def read_bytes(paths: list[str]) -> None:
    for path in paths:
        with open(path, "rb") as file:
            file.read()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiment", default=os.path.join("/tmp/expman-bench/store", stores.MANY_EXPERIMENT),
                        help="experiment folder (default: the many-runs experiment of benchmarks/stores.py)")
    parser.add_argument("--repeat", type=int, default=3, help="timings per step; the best is printed")
    options = parser.parse_args()

    folder = options.experiment
    runs = sorted(name for name in os.listdir(folder)
                  if os.path.isdir(os.path.join(folder, name)) and not name.startswith("."))
    if not runs:
        sys.exit("no run folders in %s; write the store with benchmarks/stores.py" % folder)
    yaml_paths = [os.path.join(folder, run, name) for run in runs for name in ("run.yaml", "config.yaml")]
    yaml_paths = [path for path in yaml_paths if os.path.exists(path)]
    parquet_paths = [os.path.join(folder, run, "vectors.parquet") for run in runs]
    parquet_paths = [path for path in parquet_paths if os.path.exists(path)]

    steps = [
        ("read the bytes of %d YAML files" % len(yaml_paths), lambda: read_bytes(yaml_paths)),
        ("read and parse them (PyYAML's C loader)", lambda: [parse_yaml_mapping(path) for path in yaml_paths]),
        ("read %d parquet files in one polars scan" % len(parquet_paths),
         lambda: pl.scan_parquet(parquet_paths, missing_columns="insert", extra_columns="ignore").collect()),
        ("list %d run folders" % len(runs), lambda: [os.listdir(os.path.join(folder, run)) for run in runs]),
    ]
    print("experiment: %s (%d runs), best of %d" % (folder, len(runs), options.repeat))
    total = 0.0
    for label, work in steps:
        seconds = best_of(options.repeat, work)
        if not label.startswith("read the bytes"):  # Parsing reads the bytes again.
            total += seconds
        print("  %-52s %8.0f ms" % (label, seconds * 1e3))
    print("  %-52s %8.0f ms" % ("floor (parse + scan + list)", total * 1e3))


if __name__ == "__main__":
    main()
