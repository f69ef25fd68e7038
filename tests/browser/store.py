"""The store the browser tests serve, written by the real expman logger."""

from __future__ import annotations

import json
import math
import os
import struct
import threading
import time
import zlib

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..stores import new_run

#: The run that keeps training while the tests run.
LIVE_EXPERIMENT = "vision"
LIVE_RUN = "live"
#: Seconds between two steps of the live run.
LIVE_STEP_SECONDS = 0.1
#: The live run stops by itself after this many steps (about 8 minutes).
LIVE_MAX_STEPS = 5000

BIG_EXPERIMENT = "big"
BIG_RUN = "million"
BIG_ROWS = 1_000_000


def retry_logger_call(method, *args) -> None:
    """Call a logger method, again if it fails with a transient I/O error.

    expman-rs 1.3 rewrites run.yaml from its writer thread. ``set_tags`` and
    ``set_description`` fail now and then with "No such file or directory"
    when they run during such a rewrite (1 call in 20 in one trial here).
    """
    for attempt in range(5):
        try:
            method(*args)
            return
        except RuntimeError:
            if attempt == 4:
                raise
            time.sleep(0.05)


def png_bytes(width: int, height: int) -> bytes:
    """Return a PNG image of a colour gradient (RGB, 8 bits), built with zlib alone."""
    rows = bytearray()
    for y in range(height):
        rows.append(0)  # Filter type "none" for this scanline.
        for x in range(width):
            rows += bytes((255 * x // width, 255 * y // height, 160))

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(rows))) + chunk(b"IEND", b"")


def _write(path: str, data: bytes | str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)


def _write_artifacts(folder: str) -> None:
    artifacts = os.path.join(folder, "artifacts")
    _write(os.path.join(artifacts, "images", "sample.png"), png_bytes(96, 64))
    _write(os.path.join(artifacts, "notes.txt"), "Baseline notes.\nSecond line.\n")
    _write(os.path.join(artifacts, "summary.json"), json.dumps({"best": {"acc": 0.91, "step": 280}, "seeds": [1, 2, 3]}))
    _write(os.path.join(artifacts, "table.csv"), 'epoch,acc,comment\n1,0.5,"first, warm-up"\n2,0.75,ok\n')
    table = pa.table({"id": [1, 2, 3], "label": ["cat", "dog", "bird"], "score": [0.9, 0.8, 0.7]})
    pq.write_table(table, os.path.join(artifacts, "predictions.parquet"))


def _write_finished_run(root: str, name: str, lr: float, tags: list[str], steps: int = 300) -> None:
    run = new_run(root, LIVE_EXPERIMENT, name)
    run.log_params({"lr": lr, "batch_size": 32, "optimizer": {"name": "adamw", "wd": 0.01}})
    retry_logger_call(run.set_tags, tags)
    for step in range(steps):
        values = {"train/loss": 2.0 * math.exp(-lr * step * 0.05) + 0.05, "train/acc": 1.0 - math.exp(-lr * step * 0.05)}
        if step % 50 == 0:
            values["val/acc"] = values["train/acc"] - 0.03
        run.log_vector(values, step=step)
    run.info("training finished")
    run.close()


def write_browser_store(root: str) -> None:
    """Write experiment ``vision``: finished runs (one with artifacts), a diverged and a failed run."""
    run = new_run(root, LIVE_EXPERIMENT, "baseline")
    run.log_params({"lr": 0.05, "batch_size": 32, "optimizer": {"name": "adamw", "wd": 0.01}})
    retry_logger_call(run.set_tags, ["baseline"])
    retry_logger_call(run.set_description, "the reference run")
    for step in range(300):
        values = {"train/loss": 2.0 * math.exp(-step / 60) + 0.05, "train/acc": 1.0 - math.exp(-step / 60)}
        if step % 50 == 0:
            values["val/acc"] = values["train/acc"] - 0.02
        run.log_vector(values, step=step)
    run.info("epoch 1 done")
    run.warn("learning rate is high")
    run.close()
    _write_artifacts(os.path.join(root, LIVE_EXPERIMENT, "baseline"))

    _write_finished_run(root, "sweep-lr-0.01", 0.01, ["sweep"])
    _write_finished_run(root, "sweep-lr-0.1", 0.1, ["sweep"])

    run = new_run(root, LIVE_EXPERIMENT, "diverged")
    run.log_params({"lr": 0.5, "batch_size": 32})
    for step in range(60):
        if step < 40:
            loss = 1.0 / (step + 1)
        elif step % 2:
            loss = float("nan")
        else:
            loss = float("inf")
        run.log_vector({"train/loss": loss, "train/acc": min(1.0, step / 40)}, step=step)
    run.fail("loss diverged")

    run = new_run(root, LIVE_EXPERIMENT, "crashed-early")
    run.log_vector({"train/loss": 3.0}, step=0)
    run.close(status="CRASHED")


class LiveRun:
    """A run that logs a step every ``LIVE_STEP_SECONDS`` in a thread, until stopped."""

    def __init__(self, root: str, experiment: str = LIVE_EXPERIMENT, name: str = LIVE_RUN, **logger_options):
        self._stop = threading.Event()
        self._run = new_run(root, experiment, name, **logger_options)
        self._run.log_params({"lr": 0.02, "batch_size": 64, "optimizer": {"name": "sgd", "momentum": 0.9}})
        retry_logger_call(self._run.set_tags, ["live"])
        retry_logger_call(self._run.set_description, "keeps training while the tests run")
        self.steps = 0
        self._thread = threading.Thread(target=self._train, name="browser-test-live-run", daemon=True)
        self._thread.start()

    def _train(self) -> None:
        while self.steps < LIVE_MAX_STEPS and not self._stop.wait(LIVE_STEP_SECONDS):
            step = self.steps
            values = {"train/loss": 2.0 * math.exp(-step / 200) + 0.05, "train/acc": 1.0 - math.exp(-step / 200)}
            if step % 25 == 0:
                values["val/acc"] = values["train/acc"] - 0.02
                self._run.info("step %d" % step)
            self._run.log_vector(values, step=step)
            self.steps += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._run.close()


def write_big_run(root: str) -> None:
    """Write a 1,000,000-row run: its folder and run.yaml by the logger, its rows with pyarrow.

    The logger took about 16 s for a million ``log_vector`` calls on a 2-core
    machine, too long for a test session. The table written here has the
    schema of the logger's vectors.parquet: step int64, timestamp[us, UTC],
    float64 metrics, one row group.
    """
    run = new_run(root, BIG_EXPERIMENT, BIG_RUN)
    run.log_params({"rows": BIG_ROWS})
    run.log_vector({"loss": 1.0, "acc": 0.5}, step=0)
    run.close()

    steps = np.arange(BIG_ROWS, dtype=np.int64)
    start = np.datetime64("2026-01-05T09:00:00", "us").astype(np.int64)
    table = pa.table(
        {
            "step": pa.array(steps),
            "timestamp": pa.array(start + steps * 1000, pa.timestamp("us", tz="UTC")),
            "loss": pa.array(1.0 / (1.0 + steps * 1e-3)),
            "acc": pa.array(0.5 + 0.4 * np.sin(steps * 1e-4)),
        }
    )
    pq.write_table(table, os.path.join(root, BIG_EXPERIMENT, BIG_RUN, "vectors.parquet"), row_group_size=BIG_ROWS)


def open_nan_run(root: str):
    """Start a run that logs NaN, +Inf and −Inf and stays RUNNING; return it, to close later.

    While a run is open its rows are in live Arrow segments, which keep NaN
    and ±Inf exactly. The vectors.parquet of a closed run contains null instead.
    """
    run = new_run(root, LIVE_EXPERIMENT, "nan-open")
    for step, loss in enumerate([1.0, float("nan"), 0.8, float("inf"), 0.6, float("-inf"), 0.5]):
        run.log_vector({"train/loss": loss}, step=step)
    return run


#: The experiment of the groups and compare tests: runs in two groups of a sweep.
GROUPS_EXPERIMENT = "sweep"
GROUPS_PROJECT = "vision-2026"
#: Steps each grouped run logs; the runs of seed 3 log every other step only.
GROUP_STEPS = 100
#: Group → (learning rate, seeds); each seed is one run named "<group>-s<seed>".
GROUP_RUNS = {"lr-0.1": (0.1, [1, 2, 3]), "lr-0.01": (0.01, [1, 2])}


def group_loss(lr: float, seed: int, step: int) -> float:
    """Return the train/loss the grouped runs log: a decay set by lr, shifted by 0.1 per seed."""
    return 2.0 * math.exp(-lr * step / 3) + 0.1 * seed


def write_groups_store(root: str) -> None:
    """Write experiment ``sweep`` (project vision-2026) with grouped runs, and experiments for the overview.

    In ``sweep``, each run of GROUP_RUNS logs train/loss and an epoch counter
    (step // 10). The run of seed 3 logs only the even steps, so the runs of a
    group do not share every step. Run ``solo`` has no group and fails. The
    overview gets ``sweep-b`` (same project), ``nlp`` (project text) and
    ``scratch`` (no project).
    """
    for group, (lr, seeds) in GROUP_RUNS.items():
        for seed in seeds:
            run = new_run(root, GROUPS_EXPERIMENT, "%s-s%d" % (group, seed), project=GROUPS_PROJECT, group=group)
            run.log_params({"lr": lr, "seed": seed, "batch_size": 32})
            retry_logger_call(run.set_tags, ["sweep"])
            for step in range(0, GROUP_STEPS, 2 if seed == 3 else 1):
                run.log_vector({"train/loss": group_loss(lr, seed, step), "epoch": float(step // 10)}, step=step)
            run.close()

    run = new_run(root, GROUPS_EXPERIMENT, "solo", project=GROUPS_PROJECT)
    run.log_params({"lr": 0.5, "seed": 1, "batch_size": 64})
    for step in range(20):
        run.log_vector({"train/loss": 3.0 - step * 0.1, "epoch": float(step // 10)}, step=step)
    run.fail("loss stopped falling")

    for experiment, project in (("sweep-b", GROUPS_PROJECT), ("nlp", "text"), ("scratch", None)):
        run = new_run(root, experiment, "only", project=project)
        run.log_vector({"train/loss": 1.0}, step=0)
        run.close()


#: The experiment of the user findings tests.
FINDINGS_EXPERIMENT = "findings"
#: A run name of 150 characters, longer than any column of the dashboard.
LONG_RUN = "very-long-" + "x" * 130 + "-run-name"
#: Run → (group, learning rate, weight decay, steps). The group "no group" is a real value.
FINDINGS_RUNS = {
    LONG_RUN: ("cohort-a", 0.01, 0.001, 120),
    "short-a": ("cohort-a", 0.0001, 0.01, 120),
    "short-b": ("cohort-b", 0.001, 0.1, 66),
    "literal": ("no group", 0.001, 0.01, 40),
    "plain": (None, 0.001, 0.01, 40),
}


def write_findings_store(root: str) -> None:
    """Write experiment ``findings`` (FINDINGS_RUNS), whose metrics include counters, learning rates and times.

    Each run logs train/loss, val/acc, epoch, iteration, lr, learning_rate
    and time_secs at every step. Its params are lr, batch_size (32 or 64),
    optimizer.name (adamw or sgd) and optimizer.weight_decay.
    """
    for index, (name, (group, lr, weight_decay, steps)) in enumerate(FINDINGS_RUNS.items()):
        run = new_run(root, FINDINGS_EXPERIMENT, name, group=group)
        optimizer = {"name": "sgd" if index % 2 else "adamw", "weight_decay": weight_decay}
        run.log_params({"lr": lr, "batch_size": 64 if index % 2 else 32, "optimizer": optimizer})
        for step in range(steps):
            loss = 2.0 * math.exp(-step / 40) + 0.1 * index
            run.log_vector(
                {
                    "train/loss": loss,
                    "val/acc": 1.0 - loss / 3,
                    "epoch": float(step // 10),
                    "iteration": float(step * 4),
                    "lr": lr * (0.5 ** (step // 50)),
                    "learning_rate": lr,
                    "time_secs": 0.25 * step,
                },
                step=step,
            )
        run.close()
