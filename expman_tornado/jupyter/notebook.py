"""Notebooks that open one run, or compare several, with polars."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pprint
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..store.yamlfile import CORE_SCHEMA

if TYPE_CHECKING:
    import nbformat

# nbformat is imported where it is used: with jsonschema's format checkers it
# takes about 2 s to import here, which the server would otherwise spend at
# every start, notebook or not.

NOTEBOOK_NAME = "interactive.ipynb"

#: The notebook metadata key under which the hash of the generated cells is kept.
METADATA_KEY = "expman_tornado"

_LOADERS = '''import re
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.ipc as ipc
import yaml


class CoreSchemaLoader(yaml.SafeLoader):
    """Read YAML as the expman logger writes it (YAML 1.2): "yes" and "1:30" stay strings, 1e-5 is a number."""


CORE_SCHEMA = @CORE_SCHEMA@
CoreSchemaLoader.yaml_implicit_resolvers = {}
for tag, pattern, first in CORE_SCHEMA:
    CoreSchemaLoader.add_implicit_resolver(tag, re.compile(pattern), list(first) + ([""] if tag.endswith("null") else []))


def construct_int(loader, node):
    text = loader.construct_scalar(node)
    if text.startswith(("0o", "0x")):
        return int(text[2:], 8 if text[1] == "o" else 16)
    return int(text)


CoreSchemaLoader.add_constructor("tag:yaml.org,2002:int", construct_int)


def read_segment(path):
    """Read the complete record batches of a live Arrow IPC segment (the last may be half-written)."""
    reader = ipc.MessageReader.open_stream(pa.BufferReader(pa.py_buffer(path.read_bytes())))
    schema, batches = None, []
    while True:
        try:
            message = reader.read_next_message()
        except (StopIteration, OSError, pa.ArrowInvalid):
            break
        if message.type == "schema":
            schema = ipc.read_schema(message)
        elif message.type == "record batch" and schema is not None:
            batches.append(ipc.read_record_batch(message, schema))
    return pl.from_arrow(pa.Table.from_batches(batches, schema)) if schema is not None else None


def load_metrics(run_dir):
    """Return a run's metric rows: its parquet file, then live segments written after it.

    Rows that repeat a step inside live segments are not merged here, unlike in
    the dashboard; the writer merges them when the run closes.
    """
    run_dir = Path(run_dir)
    frames, written_before = [], 0
    for name in ("vectors.parquet", "metrics.parquet"):
        if (run_dir / name).is_file():
            frames.append(pl.read_parquet(run_dir / name))
            written_before = (run_dir / name).stat().st_mtime_ns
            break
    for segment in sorted(run_dir.glob("vectors-*.arrow")):
        if segment.stat().st_mtime_ns > written_before:
            frame = read_segment(segment)
            if frame is not None:
                frames.append(frame)
    return pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()


def load_config(run_dir):
    path = Path(run_dir) / "config.yaml"
    return yaml.load(path.read_text(), Loader=CoreSchemaLoader) if path.is_file() else {}


def metric_columns(frame):
    return [name for name, dtype in frame.schema.items()
            if name not in ("step", "timestamp") and dtype.is_numeric()]


try:
    import matplotlib.pyplot as plt
except ImportError:
    plt = None  # Without matplotlib the cells below show tables instead of plots.'''
_LOADERS = _LOADERS.replace("@CORE_SCHEMA@", pprint.pformat(CORE_SCHEMA, width=100))

_ONE_RUN_PLOT = '''columns = metric_columns(metrics)
if plt is None:
    display(metrics.select(["step"] + columns).describe())
else:
    for name in columns:
        values = metrics.select("step", name).drop_nulls()
        figure, axes = plt.subplots(figsize=(7, 3))
        axes.plot(values["step"], values[name])
        axes.set_title(name)
        axes.set_xlabel("step")
        plt.show()'''

_COMPARE_PLOT = '''columns = sorted({name for frame in metrics.values() for name in metric_columns(frame)})
if plt is None:
    for name in columns:
        display(pl.DataFrame({"run": list(metrics), name: [
            frame[name].drop_nulls().tail(1).to_list()[0] if name in frame.columns and
            frame[name].drop_nulls().len() else None for frame in metrics.values()]}))
else:
    for name in columns:
        figure, axes = plt.subplots(figsize=(7, 3))
        for run, frame in metrics.items():
            if name in frame.columns:
                values = frame.select("step", name).drop_nulls()
                axes.plot(values["step"], values[name], label=run)
        axes.set_title(name)
        axes.set_xlabel("step")
        axes.legend()
        plt.show()'''


@dataclass
class NotebookResult:
    """Where a notebook was written, and whether it was written this time."""

    path: str
    written: bool
    edited: bool


def build_notebook(experiment: str, runs: dict[str, str]) -> nbformat.NotebookNode:
    """Build a notebook for one run, or one that compares several; ``runs`` maps names to folders."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

    notebook = new_notebook()
    names = list(runs)
    if len(names) == 1:
        name, folder = names[0], runs[names[0]]
        cells = [
            new_markdown_cell("# %s / %s\n\nWritten by expman-tornado. Edit freely: once "
                              "edited, this notebook is never overwritten." % (experiment, name)),
            new_code_cell(_LOADERS),
            new_code_cell("RUN_DIR = Path(%r)\nconfig = load_config(RUN_DIR)\nconfig" % folder),
            new_code_cell("metrics = load_metrics(RUN_DIR)\nmetrics.tail()"),
            new_code_cell(_ONE_RUN_PLOT),
        ]
    else:
        cells = [
            new_markdown_cell("# %s: %d runs compared\n\nWritten by expman-tornado. Edit freely: "
                              "once edited, this notebook is never overwritten." % (experiment, len(names))),
            new_code_cell(_LOADERS),
            new_code_cell("RUN_DIRS = %s\nconfigs = {run: load_config(folder) for run, folder in "
                          "RUN_DIRS.items()}\npl.DataFrame([{\"run\": run, **{k: str(v) for k, v in "
                          "config.items()}} for run, config in configs.items()])"
                          % _python_dict(runs)),
            new_code_cell("metrics = {run: load_metrics(folder) for run, folder in RUN_DIRS.items()}\n"
                          "{run: frame.height for run, frame in metrics.items()}"),
            new_code_cell(_COMPARE_PLOT),
        ]
    notebook.cells = cells
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.metadata[METADATA_KEY] = {"content_sha256": content_hash(notebook),
                                       "experiment": experiment, "runs": names}
    nbformat.validate(notebook)
    return notebook


def _python_dict(runs: dict[str, str]) -> str:
    items = ",\n    ".join("%r: Path(%r)" % (name, folder) for name, folder in runs.items())
    return "{\n    %s,\n}" % items


def content_hash(notebook: nbformat.NotebookNode) -> str:
    """Return a hash of the cells' types and sources (outputs and ids excluded)."""
    hashed = _cells_hash(notebook.cells)
    assert hashed is not None, "a notebook built by nbformat has well-formed cells"
    return hashed


def _cells_hash(cells: object) -> str | None:
    """Hash cells as loaded from JSON, or return None when they are not a list of cells.

    A source is a string, or on disk a list of lines that nbformat joins on reading.
    """
    if not isinstance(cells, list):
        return None
    pairs = []
    for cell in cells:
        if not isinstance(cell, dict):
            return None
        source = cell.get("source", "")
        if isinstance(source, list) and all(isinstance(line, str) for line in source):
            source = "".join(source)
        if not isinstance(source, str) or not isinstance(cell.get("cell_type"), str):
            return None
        pairs.append([cell["cell_type"], source])
    return hashlib.sha256(json.dumps(pairs).encode("utf-8")).hexdigest()


def _hashes_on_disk(path: str) -> tuple[str | None, str | None]:
    """Return the hash recorded in the file at ``path`` and the hash of its cells.

    Either is None when the file cannot be read as a notebook that records one.
    """
    try:
        with open(path, "rb") as f:
            data = json.loads(f.read())
    except (OSError, ValueError):  # UnicodeDecodeError is a ValueError too.
        return None, None
    if not isinstance(data, dict) or not isinstance(data.get("metadata"), dict):
        return None, None
    ours = data["metadata"].get(METADATA_KEY)
    recorded = ours.get("content_sha256") if isinstance(ours, dict) else None
    if not isinstance(recorded, str):
        return None, None
    return recorded, _cells_hash(data.get("cells"))


def write_notebook(path: str, notebook: nbformat.NotebookNode) -> NotebookResult:
    """Write a notebook unless the file there was edited since it was generated.

    A file whose cells no longer match the hash recorded when it was generated
    was edited, or was not written by this server, and is left untouched. So
    is anything at ``path`` that is not a readable notebook. Outputs are not
    hashed, so running the notebook is not an edit. The new file replaces the
    old one in one rename, so a reader never sees half a notebook.
    """
    if os.path.lexists(path):
        recorded, actual = _hashes_on_disk(path)
        if recorded is None or recorded != actual or os.path.islink(path):
            return NotebookResult(path, written=False, edited=True)
        if recorded == notebook.metadata[METADATA_KEY]["content_sha256"]:
            return NotebookResult(path, written=False, edited=False)

    import nbformat

    os.makedirs(os.path.dirname(path), exist_ok=True)
    # A name of its own per call, so two requests writing at once cannot mix their bytes.
    temporary = "%s.tmp-%d-%s" % (path, os.getpid(), secrets.token_hex(4))
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with open(descriptor, "w", encoding="utf-8") as f:
            nbformat.write(notebook, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    return NotebookResult(path, written=True, edited=False)
