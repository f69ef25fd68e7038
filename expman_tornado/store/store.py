"""The store: experiments and runs in a folder, as the expman logger writes them."""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
import time
from typing import Any

import numpy as np
import pyarrow as pa

from . import tables
from .edits import edit_yaml
from .files import FileCache, Identity, UnreadableFile, guess_mime, identity_of
from .histograms import HistogramSeries
from .histograms import select as select_histograms
from .media import MEDIA_LOG, MediaLog, filter_tags
from .metadata import experiment_fields, parse_instant, run_fields
from .runtable import RunTable
from .search import Node
from .summary import best_values, merge_best
from .names import (
    InvalidName,
    check_name,
    is_experiment_name,
    is_inside,
    is_link_outside,
    is_run_name,
    is_utf8,
    split_relative_path,
)
from .yamlfile import clean_for_json, flatten, parse_yaml_mapping, read_back_literals

log = logging.getLogger(__name__)

LOG_FILES = ("run.log", "console.log")

#: Files of a run that the artifact listing shows besides ``artifacts/**``.
RUN_FILE_NAMES = ("run.yaml", "config.yaml", "vectors.parquet", "metrics.parquet",
                  "histograms.parquet", "system.parquet", "media.jsonl") + LOG_FILES


class NotFound(LookupError):
    """An experiment, run or file that does not exist."""


class OutsideStore(PermissionError):
    """A path that resolves outside the run or the store (through a symlink)."""


class Store:
    """Read access to a store folder; every method is safe to call from threads.

    Parsed files are cached by file identity, so repeated reads of an unchanged
    store cost ``stat`` calls only. Methods raise :class:`InvalidName`,
    :class:`NotFound`, :class:`OutsideStore` or
    :class:`~expman_tornado.store.files.UnreadableFile`.
    """

    def __init__(self, root: str, stale_after: float = 300.0, cache_bytes: int = 1 << 30):
        self.root = os.path.realpath(root)
        self.stale_after = stale_after
        self.cache_bytes = cache_bytes
        self.files = FileCache()
        self._tables: OrderedDict[tuple[str, str], RunTable] = OrderedDict()
        self._table_sizes: dict[tuple[str, str], int] = {}
        self._cached_bytes = 0
        # Per run folder: (files key, tails, best values, table generation, rows).
        self._tails: dict[str, tuple[Any, dict, dict, int, int]] = {}
        self._histograms: dict[str, HistogramSeries] = {}
        self._media: dict[str, MediaLog] = {}
        self._lock = threading.Lock()

    # Folders

    def experiment_ids(self) -> list[str]:
        return sorted(
            name
            for name in _list_dir(self.root)
            if is_experiment_name(name) and self._is_folder_inside(self.root, name)
        )

    def run_ids(self, experiment: str) -> list[str]:
        folder = self.experiment_dir(experiment)
        return sorted(
            name
            for name in _list_dir(folder)
            if is_run_name(name) and self._is_folder_inside(folder, name)
        )

    def experiment_dir(self, experiment: str) -> str:
        check_name(experiment, "experiment")
        if not is_experiment_name(experiment) or not self._is_folder_inside(self.root, experiment):
            raise NotFound("experiment %r not found" % experiment)
        return os.path.join(self.root, experiment)

    def run_dir(self, experiment: str, run: str) -> str:
        folder = self.experiment_dir(experiment)
        check_name(run, "run")
        if not is_run_name(run) or not self._is_folder_inside(folder, run):
            raise NotFound("run %r not found in experiment %r" % (run, experiment))
        return os.path.join(folder, run)

    def _is_folder_inside(self, parent: str, name: str) -> bool:
        path = os.path.join(parent, name)
        if not os.path.isdir(path):
            return False
        return not os.path.islink(path) or is_inside(path, self.root)

    # Experiments

    def experiments(self) -> list[dict]:
        return [self.experiment(name) for name in self.experiment_ids()]

    def experiment(self, experiment: str) -> dict:
        folder = self.experiment_dir(experiment)
        fields = experiment_fields(self._yaml(os.path.join(folder, "experiment.yaml")), experiment)
        runs_count = active = 0
        last_activity = _mtime(os.path.join(folder, "experiment.yaml"))
        now = time.time()
        for run in self.run_ids(experiment):
            run_folder = os.path.join(folder, run)
            files = _scan(run_folder)
            status = run_fields(self._yaml(os.path.join(run_folder, "run.yaml")), run, experiment)
            runs_count += 1
            newest = max((ident.mtime_ns for ident in files.values()), default=0) / 1e9
            last_activity = max(last_activity, newest)
            if status["status"] == "RUNNING" and not self._is_stale(status, newest, now):
                active += 1
        return {
            "id": experiment,
            **fields,
            "runs_count": runs_count,
            "active_runs": active,
            "last_activity": _iso(last_activity) if last_activity else None,
        }

    # Runs

    def runs(self, experiment: str, metrics: list[str] | None = None, query: Node | None = None) -> list[dict]:
        """Return the runs of an experiment that match ``query`` (all for None), newest ``started_at`` first.

        The query is matched against every metric, and ``metrics`` then keeps
        only those keys in ``scalars``, ``metrics`` and ``best``.
        """
        summaries = [self._run_summary(experiment, run) for run in self.run_ids(experiment)]
        if query is not None:
            summaries = [summary for summary in summaries if query.matches(summary)]
        if metrics is not None:
            summaries = [_keep_metrics(summary, metrics) for summary in summaries]
        summaries.sort(key=lambda summary: summary["id"])
        summaries.sort(key=_started_key)
        return summaries

    def _run_summary(self, experiment: str, run: str) -> dict:
        folder = os.path.join(self.root, experiment, run)
        files = _scan(folder)
        fields = run_fields(self._yaml(os.path.join(folder, "run.yaml")), run, experiment)
        config = self._config(folder)
        tails, best = self._metric_summary(folder)
        newest = max((ident.mtime_ns for ident in files.values()), default=0) / 1e9
        return {
            "id": run,
            **fields,
            "stale": self._is_stale(fields, newest, time.time()),
            "params": flatten(config),
            "metrics": tails,
            "best": best,
        }

    def run(self, experiment: str, run: str) -> dict:
        """Return a run's details: metadata, config, metric columns, files present."""
        folder = self.run_dir(experiment, run)
        files = _scan(folder)
        fields = run_fields(self._yaml(os.path.join(folder, "run.yaml")), run, experiment)
        newest = max((ident.mtime_ns for ident in files.values()), default=0) / 1e9
        try:
            table = self.metrics_table(experiment, run)
        except UnreadableFile:
            table = None
        return {
            "id": run,
            **fields,
            "stale": self._is_stale(fields, newest, time.time()),
            "config": self._config(folder),
            "columns": _columns(table) if table is not None else [],
            "rows": table.num_rows if table is not None else None,
            "best": self._metric_summary(folder)[1],
            "artifacts_count": len(self._artifact_paths(folder)),
            "logs": [name for name in LOG_FILES if name in files],
        }

    def run_status(self, experiment: str, run: str) -> str | None:
        folder = self.run_dir(experiment, run)
        return run_fields(self._yaml(os.path.join(folder, "run.yaml")), run, experiment)["status"]

    def _is_stale(self, fields: dict, newest_mtime: float, now: float) -> bool:
        if fields["status"] != "RUNNING":
            return False
        heartbeat = parse_instant(fields["heartbeat_at"])
        last_sign = max(newest_mtime, heartbeat.timestamp() if heartbeat else 0.0)
        return now - last_sign > self.stale_after

    def config_as_written(self, experiment: str, run: str) -> dict:
        """Return config.yaml with JSON-safe values, nested params left as the strings written."""
        raw = self._yaml(os.path.join(self.run_dir(experiment, run), "config.yaml"))
        return clean_for_json(raw) if isinstance(raw, dict) else {}

    def _config(self, run_folder: str) -> dict:
        raw = self._yaml(os.path.join(run_folder, "config.yaml"))
        return read_back_literals(clean_for_json(raw)) if isinstance(raw, dict) else {}

    def _yaml(self, path: str) -> dict | None:
        """Return a parsed YAML mapping, its last good copy, or None.

        A symlink that resolves outside the store is not followed.
        """
        if is_link_outside(path, self.root):
            return None
        try:
            return self.files.load(path, parse_yaml_mapping, "yaml")
        except (FileNotFoundError, UnreadableFile):
            return None

    # Metrics

    def metrics_table(self, experiment: str, run: str, kind: str = "vectors") -> pa.Table:
        """Return all metric rows of a run (see :func:`tables.combine`)."""
        return self._table(self.run_dir(experiment, run), kind)

    def metrics_version(self, experiment: str, run: str, kind: str = "vectors") -> tuple[pa.Table, tuple]:
        """Return all metric rows of a run and a key naming the file versions they come from."""
        run_table = self._run_table(self.run_dir(experiment, run), kind)
        table = run_table.read()
        version = run_table.version
        self._evict_tables((run_table.folder, kind))
        return table, version

    def _run_table(self, folder: str, kind: str) -> RunTable:
        with self._lock:
            run_table = self._tables.pop((folder, kind), None)
            if run_table is None:
                run_table = RunTable(folder, kind, self.files, self.root)
            self._tables[(folder, kind)] = run_table  # The most recently used come last.
        return run_table

    def _table(self, folder: str, kind: str) -> pa.Table:
        table = self._run_table(folder, kind).read()
        self._evict_tables((folder, kind))
        return table

    def _evict_tables(self, touched: tuple[str, str]) -> None:
        """Count the bytes of a table just read, then drop the least recently used
        tables while all of them hold more than ``cache_bytes``.

        Only the touched table is measured, so a listing of many runs stays linear.
        A dropped table is read again from its files when next asked for; a live
        run's segments are then decoded from their start once. The parsed
        histograms of a run count too, and are dropped with its histogram table.
        """
        with self._lock:
            run_table = self._tables.get(touched)
            if run_table is not None:
                size = run_table.nbytes
                if touched[1] == "histograms" and touched[0] in self._histograms:
                    size += self._histograms[touched[0]].nbytes
                self._cached_bytes += size - self._table_sizes.get(touched, 0)
                self._table_sizes[touched] = size
            while self._cached_bytes > self.cache_bytes and len(self._tables) > 1:
                (folder, kind), _ = next(iter(self._tables.items()))
                del self._tables[(folder, kind)]
                self._cached_bytes -= self._table_sizes.pop((folder, kind), 0)
                if kind == "histograms":
                    self._histograms.pop(folder, None)
                self.files.forget(os.path.join(folder, ""), kind="parquet")

    def _metric_summary(self, run_folder: str) -> tuple[dict, dict]:
        """Return the tails and the best values (:func:`best_values`) of a run's metrics.

        A tail is the last non-null value of a metric column (NaN counts, as
        null). Both are kept by the identities of the metric files, so an
        unchanged run is not read again even after its table left the cache.
        While a live run's table only grows, the best values are updated from
        the new rows alone.
        """
        run_table = self._run_table(run_folder, "vectors")
        key = run_table.files_key()
        cached = self._tails.get(run_folder)
        if cached is not None and cached[0] == key:
            return cached[1], cached[2]
        try:
            table, generation = run_table.read_with_generation()
        except UnreadableFile:
            return {}, {}
        self._evict_tables((run_folder, "vectors"))
        if cached is not None and cached[3] == generation and table.num_rows >= cached[4]:
            best = merge_best(cached[2], best_values(table.slice(cached[4])))
        else:
            best = best_values(table)
        tails = _last_values(table)
        with self._lock:
            self._tails[run_folder] = (key, tails, best, generation, table.num_rows)
        return tails, best

    # Histograms and media

    def histograms(self, experiment: str, run: str, tags: list[str] | None = None,
                   max_steps: int = 0) -> dict[str, list[dict]]:
        """Return ``{tag: [{step, edges, counts}]}`` (see :func:`histograms.select`).

        Edges and counts are numpy arrays. A run without histograms returns ``{}``.
        """
        folder = self.run_dir(experiment, run)
        run_table = self._run_table(folder, "histograms")
        with self._lock:
            series = self._histograms.get(folder)
            if series is None or series.run_table is not run_table:
                series = self._histograms[folder] = HistogramSeries(run_table)
        by_tag = series.read()
        self._evict_tables((folder, "histograms"))
        return select_histograms(by_tag, tags, max_steps)

    def media(self, experiment: str, run: str, tags: list[str] | None = None) -> list[dict]:
        """Return the entries of a run's ``media.jsonl`` (see :class:`MediaLog`), of some tags or all."""
        folder = self.run_dir(experiment, run)
        if is_link_outside(os.path.join(folder, MEDIA_LOG), self.root):
            return []
        with self._lock:
            media_log = self._media.get(folder)
            if media_log is None:
                media_log = self._media[folder] = MediaLog(folder)
        return filter_tags(media_log.read(), tags)

    # Files

    def artifacts(self, experiment: str, run: str) -> list[dict]:
        """List ``artifacts/**`` (relative to it) and the run's own files."""
        folder = self.run_dir(experiment, run)
        entries = []
        for relative in self._artifact_paths(folder):
            entries.append(_file_entry(os.path.join(folder, "artifacts", relative), relative, False))
        for name in sorted(os.listdir(folder)):
            if name in RUN_FILE_NAMES or tables.segment_kind(name):
                path = os.path.join(folder, name)
                if os.path.isfile(path):
                    entries.append(_file_entry(path, name, True))
        media = os.path.join(folder, "media")
        for relative in _walk_files(media, folder):
            entries.append(_file_entry(os.path.join(media, relative), "media/" + relative, True))
        return [entry for entry in entries if entry is not None]

    def _artifact_paths(self, folder: str) -> list[str]:
        return _walk_files(os.path.join(folder, "artifacts"), folder)

    def file_path(self, experiment: str, run: str, relative: str, under: str = "") -> str:
        """Return the real path of a file of a run, checked to stay inside the run.

        ``under`` is ``"artifacts"`` for artifact paths and ``""`` for paths
        relative to the run folder.
        """
        folder = self.run_dir(experiment, run)
        parts = split_relative_path(relative)
        base = os.path.join(folder, under) if under else folder
        path = os.path.join(base, *parts)
        if not os.path.lexists(path):
            raise NotFound("file %r not found" % relative)
        if not is_inside(path, folder):
            raise OutsideStore("file %r resolves outside the run" % relative)
        if not os.path.isfile(path):
            raise NotFound("%r is not a file" % relative)
        return os.path.realpath(path)

    def log_path(self, experiment: str, run: str, name: str) -> str:
        check_name(name, "log file")
        if name not in LOG_FILES:
            raise NotFound("log %r not found; the logs are %s" % (name, ", ".join(LOG_FILES)))
        return self.file_path(experiment, run, name)

    # Edits

    def edit_experiment(self, experiment: str, changes: dict) -> dict:
        """Change experiment.yaml fields (already checked) and return the experiment."""
        folder = self.experiment_dir(experiment)
        edit_yaml(os.path.join(folder, "experiment.yaml"), changes)
        return self.experiment(experiment)

    def edit_run(self, experiment: str, run: str, changes: dict) -> dict:
        """Change run.yaml fields (already checked) and return the run's details."""
        folder = self.run_dir(experiment, run)
        edit_yaml(os.path.join(folder, "run.yaml"), changes)
        return self.run(experiment, run)

    # Totals

    def stats(self) -> dict:
        experiments = runs = active = stale = storage = 0
        now = time.time()
        for experiment in self.experiment_ids():
            experiments += 1
            folder = os.path.join(self.root, experiment)
            for run in self.run_ids(experiment):
                runs += 1
                run_folder = os.path.join(folder, run)
                files = _scan(run_folder)
                fields = run_fields(self._yaml(os.path.join(run_folder, "run.yaml")), run, experiment)
                newest = max((ident.mtime_ns for ident in files.values()), default=0) / 1e9
                if fields["status"] == "RUNNING":
                    if self._is_stale(fields, newest, now):
                        stale += 1
                    else:
                        active += 1
            storage += _tree_size(folder)
        return {"experiments": experiments, "runs": runs, "active": active, "stale": stale,
                "storage_bytes": storage}

    def counts(self) -> tuple[int, int]:
        """Return how many experiments and runs the store holds."""
        experiment_ids = self.experiment_ids()
        return len(experiment_ids), sum(len(self.run_ids(e)) for e in experiment_ids)


def _list_dir(folder: str) -> list[str]:
    try:
        return os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return []


def _scan(folder: str) -> dict[str, Identity]:
    """Return the identity of each regular file directly inside a folder."""
    found = {}
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                try:
                    if entry.is_file():
                        found[entry.name] = identity_of(entry.stat())
                except OSError:
                    continue
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        pass
    return found


def _walk_files(top: str, run_folder: str) -> list[str]:
    """List the files under ``top`` relative to it, skipping links that leave the run."""
    found = []
    for dirpath, dirnames, filenames in os.walk(top, followlinks=False):
        dirnames[:] = sorted(
            d for d in dirnames if is_utf8(d) and is_inside(os.path.join(dirpath, d), run_folder)
        )
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            if is_utf8(name) and os.path.isfile(path) and is_inside(path, run_folder):
                found.append(os.path.relpath(path, top).replace(os.sep, "/"))
    return found


def _file_entry(path: str, relative: str, is_default: bool) -> dict | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    name = relative.rsplit("/", 1)[-1]
    ext = os.path.splitext(name)[1].lstrip(".").lower()
    return {
        "path": relative,
        "name": name,
        "size": stat.st_size,
        "ext": ext,
        "mime": guess_mime(name),
        "modified": _iso(stat.st_mtime),
        "is_default": is_default,
    }


def _tree_size(folder: str) -> int:
    total = 0
    for dirpath, _, filenames in os.walk(folder):
        for name in filenames:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                continue
    return total


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0


def _iso(seconds: float) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _started_key(summary: dict) -> tuple:
    instant = parse_instant(summary.get("started_at"))
    return (instant is None, -instant.timestamp() if instant else 0.0)


def _columns(table: pa.Table) -> list[dict]:
    return [{"name": field.name, "type": str(field.type)} for field in table.schema]


def _keep_metrics(summary: dict, metrics: list[str]) -> dict:
    """Return a run summary with only the given keys in ``scalars``, ``metrics`` and ``best``."""
    kept = dict(summary)
    for group in ("scalars", "metrics", "best"):
        kept[group] = {key: value for key, value in summary[group].items() if key in metrics}
    return kept


def _last_values(table: pa.Table) -> dict:
    tails = {}
    for name in table.column_names:
        if name in (tables.STEP, tables.TIMESTAMP):
            continue
        column = table.column(name).drop_null()
        if len(column):
            value = column[-1].as_py()
            if isinstance(value, float) and value != value or value in (float("inf"), float("-inf")):
                value = None
            elif value is not None and pa.types.is_float32(column.type):
                # The shortest decimal that is this float32, as the metric rows show it.
                value = float(str(np.float32(value)))
            tails[name] = value
    return tails
