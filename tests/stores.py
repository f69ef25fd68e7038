"""Test stores: written by the real expman logger, plus hand-built odd cases."""

from __future__ import annotations

import os

from expman import Experiment

LOGGER_OPTIONS = dict(redirect_console=False, system_metrics_interval_secs=0, capture_provenance=False)


def new_run(root: str, experiment: str, run: str, **options) -> Experiment:
    """Start a run with the real logger, with the options that keep tests quiet."""
    return Experiment(experiment, run_name=run, base_dir=root, **{**LOGGER_OPTIONS, **options})


def write_real_store(root: str) -> None:
    """Write experiment ``vision``: runs ``baseline`` (finished), ``nan`` and ``failed``."""
    run = new_run(root, "vision", "baseline")
    run.log_params({"lr": 0.001, "batch_size": 32, "optimizer": {"name": "adamw", "wd": 0.01}})
    run.set_tags(["baseline"])
    run.set_description("first try")
    for step in range(200):
        values = {"loss": 1.0 / (step + 1)}
        if step % 50 == 0:
            values["val_acc"] = step / 200
        run.log_vector(values, step=step)
    run.info("epoch done")
    run.log_scalar("best_acc", 0.75)
    artifacts = os.path.join(root, "vision", "baseline", "artifacts")
    os.makedirs(os.path.join(artifacts, "plots"), exist_ok=True)
    with open(os.path.join(artifacts, "notes.txt"), "w") as f:
        f.write("hello\n")
    with open(os.path.join(artifacts, "plots", "curve.csv"), "w") as f:
        f.write("a,b\n1,2\n")
    run.close()

    run = new_run(root, "vision", "nan")
    for step, loss in enumerate([1.0, float("nan"), float("inf"), 0.5, float("-inf")]):
        run.log_vector({"loss": loss}, step=step)
    run.close()

    run = new_run(root, "vision", "failed")
    run.log_vector({"loss": 3.0}, step=0)
    run.fail("out of memory")
    run.close(status="FAILED")
