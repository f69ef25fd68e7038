"""The demo store: a few finished runs and one that keeps training while the server runs.

Every run is written by the real expman logger (``expman-rs``), exactly as a
user's training script writes it.
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import random
import tempfile
import threading
import time

from expman import Experiment

log = logging.getLogger(__name__)

EXPERIMENT = "demo-mnist"

#: Seconds between two steps of the live run.
LIVE_STEP_SECONDS = 0.25

#: Step at which the live run gets its tags and description (a few flushes after its start).
METADATA_STEP = 8

_LOGGER_OPTIONS = dict(
    redirect_console=False, system_metrics_interval_secs=0, capture_provenance=False
)


def start_demo(folder: str | None = None) -> str:
    """Write the demo store into ``folder`` (a new temporary folder if None), start its live run.

    Return the store folder. The live run trains in a daemon thread until the
    process exits, when it is closed as FINISHED.
    """
    folder = folder or tempfile.mkdtemp(prefix="expman-demo-")
    os.makedirs(folder, exist_ok=True)
    for index, lr in enumerate((0.1, 0.03, 0.01)):
        _write_finished_run(folder, "lr-%g" % lr, lr, seed=index, steps=300)
    _write_finished_run(folder, "diverged", 0.5, seed=9, steps=120, diverge_at=80)

    live = _LiveRun(folder)
    live.start()
    atexit.register(live.stop)
    log.info("Demo store written to %s; run %s/%s keeps training", folder, EXPERIMENT, live.name)
    return folder


def set_run_metadata(run: Experiment, tags: list[str], description: str | None = None) -> None:
    """Set a run's tags and description, retrying while the logger has not created run.yaml yet.

    expman-rs 1.3 raises "I/O error: No such file or directory" from ``set_tags``
    and ``set_description`` when they are called right after the run starts.
    """
    for attempt in range(50):
        try:
            run.set_tags(tags)
            if description is not None:
                run.set_description(description)
            return
        except RuntimeError:
            if attempt == 49:
                raise
            time.sleep(0.02)


def _curve(step: int, lr: float, rng: random.Random) -> dict:
    progress = 1.0 - math.exp(-lr * step / 3.0)
    loss = 2.3 * (1.0 - progress) + 0.05 + rng.gauss(0, 0.02)
    acc = 0.1 + 0.88 * progress + rng.gauss(0, 0.005)
    return {"train/loss": max(loss, 0.0), "train/acc": min(acc, 1.0)}


def _write_finished_run(folder: str, name: str, lr: float, seed: int, steps: int,
                        diverge_at: int | None = None) -> None:
    rng = random.Random(seed)
    run = Experiment(EXPERIMENT, run_name=name, base_dir=folder, **_LOGGER_OPTIONS)
    run.log_params({"lr": lr, "batch_size": 64, "optimizer": {"name": "adamw", "weight_decay": 0.01}})
    set_run_metadata(run, tags=["demo", "sweep"])
    for step in range(steps):
        values = _curve(step, lr, rng)
        if diverge_at is not None and step >= diverge_at:
            values["train/loss"] = float("nan") if step % 2 else float("inf")
        if step % 25 == 0:
            values["val/acc"] = values["train/acc"] - 0.02
        run.log_vector(values, step=step)
    run.info("training finished after %d steps" % steps)
    if diverge_at is not None:
        run.fail("loss diverged at step %d" % diverge_at)
        run.close(status="FAILED")
    else:
        run.close()


class _LiveRun:
    """A run that logs one step every ``LIVE_STEP_SECONDS`` in a daemon thread."""

    name = "live-lr-0.05"

    def __init__(self, folder: str):
        self._stopped = threading.Event()
        self._run = Experiment(EXPERIMENT, run_name=self.name, base_dir=folder, **_LOGGER_OPTIONS)
        self._run.log_params({"lr": 0.05, "batch_size": 64, "optimizer": {"name": "sgd", "momentum": 0.9}})
        self._thread = threading.Thread(target=self._train, name="expman-demo-run", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=5)
        self._run.close()

    def _train(self) -> None:
        rng = random.Random(42)
        step = 0
        while not self._stopped.wait(LIVE_STEP_SECONDS):
            values = _curve(step, 0.05, rng)
            if step % 25 == 0:
                values["val/acc"] = values["train/acc"] - 0.02
                self._run.info("step %d: loss %.4f" % (step, values["train/loss"]))
            self._run.log_vector(values, step=step)
            if step == METADATA_STEP:
                self._set_metadata()
            step += 1

    def _set_metadata(self) -> None:
        # NOTE: set right after the run starts, expman-rs 1.3 sometimes loses these
        # fields and once showed the run as CRASHED; a few steps later it has not.
        try:
            set_run_metadata(self._run, tags=["demo", "live"],
                             description="This run keeps training while the demo server runs.")
        except RuntimeError as exc:
            log.warning("Could not set the tags of demo run %s: %s", self.name, exc)
