"""Test stores: written by the real expman logger, plus hand-built odd cases."""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from expman import Experiment

from expman_tornado.demo import set_run_metadata

LOGGER_OPTIONS = dict(redirect_console=False, system_metrics_interval_secs=0, capture_provenance=False)


def new_run(root: str, experiment: str, run: str, **options) -> Experiment:
    """Start a run with the real logger, with the options that keep tests quiet."""
    return Experiment(experiment, run_name=run, base_dir=root, **{**LOGGER_OPTIONS, **options})


def write_real_store(root: str) -> None:
    """Write experiment ``vision``: runs ``baseline`` (finished), ``nan`` and ``failed``."""
    run = new_run(root, "vision", "baseline")
    run.log_params({"lr": 0.001, "batch_size": 32, "optimizer": {"name": "adamw", "wd": 0.01}})
    set_run_metadata(run, tags=["baseline"], description="first try")
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


# Hand-built stores: files written with pyarrow and PyYAML, for inputs the
# logger never writes (damaged files, other writers' types, odd names).

#: The instant of step 0 in hand-built metric tables.
T0 = datetime(2026, 1, 5, 9, 0, 0, tzinfo=timezone.utc)


def write_yaml(path: str, value) -> None:
    """Write a YAML file (any value, so tests can write lists and scalars too)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(value, f, allow_unicode=True, sort_keys=False)


def write_text(path: str, text: str | bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    data = text.encode("utf-8") if isinstance(text, str) else text
    with open(path, "wb") as f:
        f.write(data)


def make_run(root: str, experiment: str, run: str, status: str | None = "FINISHED", **fields) -> str:
    """Create a run folder with a run.yaml and return the folder (``status=None``: no run.yaml)."""
    folder = os.path.join(root, experiment, run)
    os.makedirs(folder, exist_ok=True)
    if status is not None:
        started = fields.pop("started_at", T0.strftime("%Y-%m-%dT%H:%M:%SZ"))
        write_yaml(os.path.join(folder, "run.yaml"),
                   {"name": run, "experiment": experiment, "status": status, "started_at": started, **fields})
    return folder


def metric_table(steps, timestamps=None, **columns) -> pa.Table:
    """Return a metric table of ``step`` int64, ``timestamp`` (one second per row from T0) and columns.

    A column given as a list gets the type pyarrow infers (float64 for floats).
    Give a ``pa.Array`` for any other type.
    """
    if timestamps is None:
        timestamps = pa.array([T0 + timedelta(seconds=i) for i in range(len(steps))], pa.timestamp("us", tz="UTC"))
    data = {"step": pa.array(steps, pa.int64()), "timestamp": timestamps}
    for name, values in columns.items():
        data[name] = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(values)
    return pa.table(data)


def parquet_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


def write_parquet(path: str, table: pa.Table) -> None:
    write_text(path, parquet_bytes(table))


def stream_bytes(*tables: pa.Table) -> tuple[bytes, list[int]]:
    """Return an Arrow IPC stream of the tables' rows (no end marker, as while a run is live).

    The second value lists the byte offset where each record batch ends.
    """
    schema = tables[0].schema
    data = schema.serialize().to_pybytes()
    ends = []
    for table in tables:
        for batch in table.cast(schema).to_batches():
            data += batch.serialize().to_pybytes()
            ends.append(len(data))
    return data, ends


def write_segment(path: str, *tables: pa.Table) -> None:
    """Write a live segment whose record batches are the given tables (one schema)."""
    write_text(path, stream_bytes(*tables)[0])


def set_mtime(path: str, seconds: float) -> None:
    """Set a file's access and modification times to ``seconds`` since the epoch."""
    os.utime(path, (seconds, seconds))
