"""The store: experiments and runs in a folder, as the expman logger writes them."""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
import time
from typing import Any, Collection, NamedTuple

import numpy as np
import orjson
import pyarrow as pa

from . import tables
from .edits import edit_yaml
from .files import FileCache, UnreadableFile, guess_mime
from .filesystem import LocalFilesystem, ObjectFilesystem, open_filesystem
from .histograms import HistogramSeries
from .histograms import select as select_histograms
from .media import MEDIA_LOG, MediaLog, filter_tags
from .metadata import experiment_fields, parse_instant, run_fields
from .runtable import Rows, RunTable
from .search import Node
from .summary import best_values, merge_best
from .summary_index import IndexEntry, SummaryIndex
from .names import (
    check_name,
    is_experiment_name,
    is_inside,
    is_link_outside,
    is_run_name,
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


class StoreClosed(RuntimeError):
    """A summary pass stopped because the server is stopping (see :meth:`Store.close`)."""


class Store:
    """Read access to a store folder; every method is safe to call from threads.

    Parsed files are cached by file identity, so repeated reads of an unchanged
    store cost ``stat`` calls only. Methods raise :class:`InvalidName`,
    :class:`NotFound`, :class:`OutsideStore` or
    :class:`~expman_tornado.store.files.UnreadableFile`.
    """

    def __init__(self, root: str, stale_after: float = 300.0, cache_bytes: int = 1 << 30,
                 cache_dir: str = "", executor=None, storage_options: dict | None = None):
        """``cache_dir`` is the folder of the summary index (:class:`SummaryIndex`), empty for none.
        ``executor`` is the read thread pool, on which the summary index is saved.
        ``root`` is a folder, or a URL such as ``s3://bucket/prefix`` read through
        fsspec with ``storage_options`` (see :mod:`.filesystem`).
        """
        #: The filesystem every read of the store goes through.
        self.fs: LocalFilesystem | ObjectFilesystem = open_filesystem(root, storage_options)
        self.root = self.fs.root_path(root)
        self.executor = executor
        self.stale_after = stale_after
        self.cache_bytes = cache_bytes
        self.files = FileCache(self.fs)
        self._tables: OrderedDict[tuple[str, str], RunTable] = OrderedDict()
        self._table_sizes: dict[tuple[str, str], int] = {}
        self._cached_bytes = 0
        # Per run folder: (files key, tails, best values, table generation, rows).
        self._tails: dict[str, tuple[Any, dict, dict, int, int]] = {}
        self._histograms: dict[str, HistogramSeries] = {}
        self._media: dict[str, MediaLog] = {}
        # The runs listing: each run's summary, and whole encoded replies.
        self._summaries: dict[str, _SummaryEntry] = {}
        self._listing_bodies: OrderedDict[tuple, tuple[tuple, bytes]] = OrderedDict()
        self._run_name_lists: dict[str, tuple[Any, list[str], frozenset[str]]] = {}
        self._index = SummaryIndex(cache_dir, self.root, executor) if cache_dir else None
        if self._index is not None and executor is not None:
            # Read while the server starts, so the first listing finds it parsed.
            executor.submit(self._index.load)
        # The run names of each experiment when its summaries last went into the index.
        self._indexed_names: dict[str, list[str]] = {}
        # The change feed (see note_change). _change_count is the number of changes
        # noted so far. _changed_at maps "experiment", "experiment/run" or "" (the
        # root) to the count at its last change. _feed_since is the count at which
        # the feed became active, None while it is not.
        self._change_count = 0
        self._changed_at: dict[str, int] = {}
        self._feed_since: int | None = None
        self._lock = threading.Lock()
        # One summary pass per experiment at a time: a listing that arrives during
        # another one waits for it and then finds its summaries current.
        self._pass_locks: dict[str, threading.Lock] = {}
        # Listings building summaries now; the background read waits while there are any.
        self._listing_passes = 0
        self._closing = threading.Event()

    def close(self) -> None:
        """Stop summary passes at their next run, so a stopping server does not wait for thousands of runs.

        A pass stopped so raises StoreClosed. Other reads end on their own.
        """
        self._closing.set()

    # Folders

    def experiment_ids(self) -> list[str]:
        return sorted(
            name
            for name in self.fs.list_names(self.root)
            if is_experiment_name(name) and self._is_folder_inside(self.root, name)
        )

    def run_ids(self, experiment: str) -> list[str]:
        folder = self.experiment_dir(experiment)
        return sorted(
            name
            for name in self.fs.list_names(folder)
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
        if not self.fs.is_folder(path):
            return False
        return not self.fs.is_link(path) or is_inside(path, self.root)

    # Experiments

    def experiments(self) -> list[dict]:
        return [self.experiment(name) for name in self.experiment_ids()]

    def experiment(self, experiment: str) -> dict:
        folder = self.experiment_dir(experiment)
        fields = experiment_fields(self._yaml(os.path.join(folder, "experiment.yaml")), experiment)
        runs_count = active = 0
        last_activity = self.fs.mtime(os.path.join(folder, "experiment.yaml"))
        now = time.time()
        for run in self.run_ids(experiment):
            run_folder = os.path.join(folder, run)
            files = self.fs.scan_files(run_folder)
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
        only those keys in ``scalars``, ``metrics`` and ``best``. The dicts are
        the cached ones, shared with later calls, so callers must not change them.
        """
        return [summary for summary, _ in self._select(self._summary_entries(experiment), metrics, query)]

    def runs_json(self, experiment: str, metrics: list[str] | None = None, query: Node | None = None) -> bytes:
        """Return :meth:`runs` encoded as a JSON array, as ``orjson.dumps`` would write it.

        Each run's JSON is kept with its summary, and the whole reply is kept
        by the identities of every run's files. So an unchanged experiment
        costs no encoding. It costs a few ``stat`` calls per run, or none while
        the change feed is active (see :meth:`note_change`).
        """
        entries = self._summary_entries(experiment)
        # ``stale`` changes with time alone, so it is part of the version.
        version = tuple((entry.key, entry.summary["stale"]) for entry in entries)
        cache_key = (experiment, tuple(metrics) if metrics is not None else None, query)
        with self._lock:
            cached = self._listing_bodies.get(cache_key)
        if cached is not None and cached[0] == version:
            return cached[1]
        parts = []
        for summary, encoded in self._select(entries, metrics, query):
            parts.append(encoded if encoded is not None else _encode_json(summary))
        body = b"[" + b",".join(parts) + b"]"
        with self._lock:
            self._listing_bodies[cache_key] = (version, body)
            self._listing_bodies.move_to_end(cache_key)
            while len(self._listing_bodies) > LISTING_BODIES:
                self._listing_bodies.popitem(last=False)
        return body

    @staticmethod
    def _select(entries: list[_SummaryEntry], metrics: list[str] | None, query: Node | None) -> list[tuple]:
        """Return ``(summary, its JSON or None)`` of the entries that match, newest first."""
        if query is not None:
            entries = [entry for entry in entries if query.matches(entry.summary)]
        entries = sorted(entries, key=_entry_order)
        if metrics is None:
            return [(entry.summary, entry.encoded) for entry in entries]
        return [(_keep_metrics(entry.summary, metrics), None) for entry in entries]

    # The change feed

    def note_change(self, path: str) -> None:
        """Record that a file or folder of the store changed, for the runs listing.

        The watcher calls it for every changed path before anything reads the
        change. While the feed is active (:meth:`set_change_feed`), a run's
        summary is served without ``stat`` calls unless a change was noted since
        it was built under its run folder, its experiment folder or the root. A
        path equal to an experiment folder or the root (which the watcher sends
        when it lost events) makes every summary under it read again.
        """
        if path == self.root:
            key = ""
        elif path.startswith(self.root + os.sep):
            key = "/".join(path[len(self.root) + 1:].split(os.sep, 2)[:2])
        else:
            return
        with self._lock:
            self._change_count += 1
            if len(self._changed_at) >= MAX_NOTED_PATHS:
                # Bounds the memory of a store where many distinct names change:
                # noting the root instead makes every summary be checked again once.
                self._changed_at = {"": self._change_count}
            self._changed_at[key] = self._change_count

    def set_change_feed(self, active: bool) -> None:
        """Say whether every change of the store is passed to :meth:`note_change` from now on.

        The live hub turns it on when its watcher starts and off when it stops.
        Summaries built before the feed became active are checked once with
        ``stat`` calls, as without a feed, because changes before that were not noted.
        """
        with self._lock:
            self._change_count += 1
            self._feed_since = self._change_count if active else None

    def _last_change(self, experiment: str, run: str) -> int:
        """Return the number of the last change noted under a run (0 for none); call with ``_lock`` held."""
        changed_at = self._changed_at
        return max(changed_at.get("", 0), changed_at.get(experiment, 0), changed_at.get(experiment + "/" + run, 0))

    # The runs listing

    def run_statuses(self, experiment: str) -> dict[str, str | None]:
        """Return the status of each run of an experiment.

        A run with a current summary (in memory or in the summary index) takes
        its status from it. Only the run.yaml of any other run is read, so that
        the first start on a store does not read every run's metrics for this.
        """
        statuses = {entry.summary["id"]: entry.summary["status"]
                    for entry in self._summary_entries(experiment, read_missing=False)}
        for run in self.run_ids(experiment):
            if run not in statuses:
                try:
                    statuses[run] = self.run_status(experiment, run)
                except NotFound:
                    continue  # Deleted since the listing.
        return statuses

    def read_summaries(self) -> int:
        """Read the summary of every run that no runs listing has read yet; return the number of runs.

        The server calls it in the background as it starts (see
        ``ExpmanTornado.read_summaries_at_start``), so that the first listing of
        an experiment is served from memory. Summaries of closed runs come from
        the summary index when their files are unchanged.
        """
        count = 0
        for experiment in self.experiment_ids():
            try:
                count += len(self._summary_entries(experiment, background=True))
            except NotFound:  # Deleted or renamed since it was listed.
                continue
        return count

    def _summary_entries(self, experiment: str, read_missing: bool = True,
                         background: bool = False) -> list[_SummaryEntry]:
        """Return :meth:`_summary_pass`, one pass per experiment at a time.

        A ``background`` pass builds each summary only while no other pass is
        building summaries, so a listing that a user waits for gets the cores.
        """
        self.experiment_dir(experiment)  # Raises NotFound before a lock is kept for a wrong name.
        with self._lock:
            pass_lock = self._pass_locks.setdefault(experiment, threading.Lock())
        with pass_lock:
            if background:
                return self._summary_pass(experiment, read_missing, background)
            with self._lock:
                self._listing_passes += 1
            try:
                return self._summary_pass(experiment, read_missing)
            finally:
                with self._lock:
                    self._listing_passes -= 1

    def _summary_pass(self, experiment: str, read_missing: bool = True,
                      background: bool = False) -> list[_SummaryEntry]:
        """Return the summary of each run of an experiment, from the cache while its files are unchanged.

        While the change feed is active, a summary that no noted change touched
        is used as it is. Otherwise the identities of its files are compared with
        those it was read from. A closed run without a current summary is looked
        up in the summary index on disk before its files are read. With
        ``read_missing`` false, runs without a current summary are left out.
        """
        folder = self.experiment_dir(experiment)
        now = time.time()
        # Paths relative to the open experiment folder cost the kernel a shorter
        # lookup than absolute ones, and a listing makes thousands of them.
        try:
            folder_fd = self.fs.open_folder(folder)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound("experiment %r not found" % experiment) from None
        try:
            names, linked = self._run_names(folder)
            # The watcher reports changes under the folder a symlink resolves to.
            experiment_linked = self.fs.is_link(folder)
            found: dict[str, _SummaryEntry] = {}
            missing = []
            for run in names:
                entry = self._current_entry(experiment, run, folder, folder_fd, experiment_linked or run in linked)
                if entry is None:
                    missing.append(run)
                    continue
                if entry.summary["status"] == "RUNNING":
                    entry = self._with_stale(entry, folder + os.sep + run, now)
                found[run] = entry
            if missing and self._index is not None:
                found.update(self._entries_from_index(experiment, missing, folder, folder_fd))
                missing = [run for run in missing if run not in found]
            if not read_missing:
                return [found[run] for run in names if run in found]
            built = self._build_entries(experiment, missing, folder, folder_fd, background) if missing else {}
            found.update(built)
        finally:
            self.fs.close_folder(folder_fd)
        # The index changes only when a summary was read or a run came or went.
        if self._index is not None and (built or self._indexed_names.get(experiment) is not names):
            self._update_index(experiment, built, names)
            self._indexed_names[experiment] = names
        return [found[run] for run in names]

    def _current_entry(self, experiment: str, run: str, folder: str, folder_fd: Any,
                       linked: bool) -> _SummaryEntry | None:
        """Return the cached summary entry of a run if it is still current, else None.

        With the change feed active, an entry built after the feed started is
        current while no change was noted under it. ``linked`` (the run or
        experiment folder is a symlink) makes it check with ``stat`` always,
        because the watcher reports changes under the folder the link resolves to.
        NOTE: a file inside a run folder that is a symlink to another run's file
        is not checked that way, so a change of its target is not seen while the feed is active.
        """
        run_folder = folder + os.sep + run
        entry = self._summaries.get(run_folder)
        if entry is None:
            return None
        with self._lock:
            feed_since = self._feed_since
            count = self._change_count
            if feed_since is not None and not linked and entry.seen >= feed_since:
                return entry if self._last_change(experiment, run) <= entry.seen else None
        if entry.key != self.fs.stat_keys(entry.stat_paths, folder_fd):
            return None
        if feed_since is not None and entry.seen < count:
            # The files are as they were when read, and every later change will be
            # noted: from now on the feed alone decides whether the entry is current.
            newest = _newest_mtime(self.fs, run_folder) if entry.summary["status"] == "RUNNING" else entry.newest
            entry = entry._replace(seen=count, newest=newest)
            with self._lock:
                self._summaries[run_folder] = entry
        return entry

    def _build_entries(self, experiment: str, runs: list[str], folder: str, folder_fd: Any,
                       background: bool = False) -> dict[str, _SummaryEntry]:
        """Build the summary entries of runs, one after another in the calling thread.

        Raise StoreClosed once :meth:`close` was called. A ``background`` build
        waits before each run while a listing builds summaries.
        NOTE: building them on the read thread pool as well was slower: 1.9 ms per
        run alone, 2.4 to 3.0 ms with one to three pool threads helping (2 cores,
        benchmarks/stores.py). YAML parsing and most of the summary work hold the GIL.
        """
        entries = {}
        for run in runs:
            while background and self._listing_passes and not self._closing.is_set():
                time.sleep(0.005)
            if self._closing.is_set():
                raise StoreClosed("the server is stopping")
            entries[run] = self._build_summary_entry(experiment, run, folder + os.sep + run, folder_fd)
        return entries

    def _entries_from_index(self, experiment: str, runs: list[str], folder: str,
                            folder_fd: Any) -> dict[str, _SummaryEntry]:
        """Return entries of closed runs from the summary index, those whose files are unchanged."""
        assert self._index is not None
        entries = {}
        for run in runs:
            indexed = self._index.get(experiment + "/" + run)
            if indexed is None:
                continue
            with self._lock:
                seen = self._change_count
            if self.fs.stat_keys(indexed.paths, folder_fd) != indexed.key:
                continue
            entry = _SummaryEntry(indexed.key, indexed.paths, indexed.summary, indexed.encoded, indexed.order,
                                  seen, 0.0)
            with self._lock:
                self._summaries[folder + os.sep + run] = entry
            entries[run] = entry
        return entries

    def _update_index(self, experiment: str, built: dict[str, _SummaryEntry], names: list[str]) -> None:
        """Put the summaries just built of closed runs into the summary index, drop those of
        other runs and of runs no longer in ``names``, and save the index if it changed.
        """
        assert self._index is not None
        for run, entry in built.items():
            name = experiment + "/" + run
            # A run with its folder among the paths is live or has segments (see _summary_stat_paths).
            if entry.summary["status"] in _CLOSED_STATUSES and entry.stat_paths[0] != run:
                self._index.put(name, IndexEntry(entry.stat_paths, entry.key, entry.summary, entry.encoded,
                                                 entry.order))
            else:
                self._index.discard(name)
        # NOTE: entries of an experiment that was deleted stay in the index file; they
        # are never served, because their files no longer match.
        self._index.retain(experiment, set(names))
        self._index.save_soon()

    def _run_names(self, folder: str) -> tuple[list[str], frozenset[str]]:
        """List the run folders of an experiment folder, as :meth:`run_ids` does, and those that are symlinks.

        The list is kept while the experiment folder's inode and mtime are
        unchanged, which they are until a run folder is created, deleted or renamed.
        """
        identity = self.fs.stat_keys((folder,))[0]
        with self._lock:
            cached = self._run_name_lists.get(folder)
        if cached is not None and cached[0] == identity:
            return cached[1], cached[2]
        names, linked = [], set()
        entries = self.fs.list_folder(folder)
        if entries is None:
            return [], frozenset()
        for entry in entries:
            if not entry.is_folder or not is_run_name(entry.name):
                continue
            if entry.is_link:
                if not is_inside(os.path.join(folder, entry.name), self.root):
                    continue
                linked.add(entry.name)
            names.append(entry.name)
        names.sort()
        prefix, present = folder + os.sep, set(names)
        with self._lock:
            self._run_name_lists[folder] = (identity, names, frozenset(linked))
            removed = [path for path in self._summaries
                       if path.startswith(prefix) and path[len(prefix):] not in present]
            for path in removed:  # Runs deleted or renamed since the last listing.
                del self._summaries[path]
        return names, frozenset(linked)

    def _build_summary_entry(self, experiment: str, run: str, run_folder: str, folder_fd: Any) -> _SummaryEntry:
        # The change count and the key are taken before the files are read, so a
        # change made during the read makes the next request read them again.
        with self._lock:
            seen = self._change_count
        stat_paths = self._summary_stat_paths(run_folder)
        key = self.fs.stat_keys(stat_paths, folder_fd)
        summary = self._run_summary(experiment, run)
        if summary["status"] not in _CLOSED_STATUSES and stat_paths[0] != run:
            # run.yaml changed between the stat and the read: take the folder too.
            stat_paths = (run,) + stat_paths
            key = (None,) + key
        newest = _newest_mtime(self.fs, run_folder) if summary["status"] == "RUNNING" else 0.0
        entry = _SummaryEntry(key, stat_paths, summary, _encode_json(summary), _started_key(summary), seen, newest)
        with self._lock:
            self._summaries[run_folder] = entry
        return entry

    def _summary_stat_paths(self, run_folder: str) -> tuple[str, ...]:
        """Return the paths, relative to the experiment folder, whose identities tell whether a run's summary changed.

        A closed run is read from run.yaml, config.yaml and one parquet file, and
        a file created where none was changes the missing file's identity too.
        The folder itself is added for a run that is not closed or has segments:
        its inode and mtime change when a file is created, deleted or renamed in
        it, such as a new segment. A closed run that is resumed rewrites run.yaml
        first, which changes its identity.
        """
        found = tables.scan_metric_files(run_folder, "vectors", self.root, self.fs)
        run = os.path.basename(run_folder)
        paths = (run + "/run.yaml", run + "/config.yaml")
        if found.parquet == os.path.join(run_folder, "vectors.parquet"):
            paths += (run + "/vectors.parquet",)
        else:
            paths += (run + "/vectors.parquet", run + "/metrics.parquet")
        status = run_fields(self._yaml(os.path.join(run_folder, "run.yaml")), run, "")["status"]
        if found.segments or status not in _CLOSED_STATUSES:
            paths = (run,) + paths + tuple(run + "/" + os.path.basename(path) for path, _ in found.segments)
        return paths

    def _with_stale(self, entry: _SummaryEntry, run_folder: str, now: float) -> _SummaryEntry:
        """Return the entry of a RUNNING run with ``stale`` as of ``now`` (it changes with time alone).

        While the change feed vouches for the entry, no file of the run changed
        since it was built, so the newest file time taken then still holds.
        """
        with self._lock:
            vouched = self._feed_since is not None and entry.seen >= self._feed_since
        newest = entry.newest if vouched else _newest_mtime(self.fs, run_folder)
        stale = self._is_stale(entry.summary, newest, now)
        if stale == entry.summary["stale"]:
            return entry
        summary = {**entry.summary, "stale": stale}
        updated = entry._replace(summary=summary, encoded=_encode_json(summary))
        with self._lock:
            self._summaries[run_folder] = updated
        return updated

    def _run_summary(self, experiment: str, run: str) -> dict:
        folder = os.path.join(self.root, experiment, run)
        fields = run_fields(self._yaml(os.path.join(folder, "run.yaml")), run, experiment)
        config = self._config(folder)
        tails, best = self._metric_summary(folder)
        stale = False
        if fields["status"] == "RUNNING":  # Only a RUNNING run can be stale.
            newest = _newest_mtime(self.fs, folder)
            stale = self._is_stale(fields, newest, time.time())
        return {
            "id": run,
            **fields,
            "stale": stale,
            "params": flatten(config),
            "metrics": tails,
            "best": best,
        }

    def run(self, experiment: str, run: str) -> dict:
        """Return a run's details: metadata, config, metric columns, files present."""
        folder = self.run_dir(experiment, run)
        files = self.fs.scan_files(folder)
        unreadable: dict[str, str] = {}
        fields = run_fields(self._yaml(os.path.join(folder, "run.yaml"), unreadable), run, experiment)
        newest = max((ident.mtime_ns for ident in files.values()), default=0) / 1e9
        try:
            table = self.metrics_table(experiment, run)
        except UnreadableFile as exc:
            table = None
            unreadable[os.path.relpath(exc.path, folder)] = exc.reason
        return {
            "id": run,
            **fields,
            "stale": self._is_stale(fields, newest, time.time()),
            "config": self._config(folder, unreadable),
            "columns": tables.describe_columns(table) if table is not None else [],
            "rows": table.num_rows if table is not None else None,
            "best": self._metric_summary(folder)[1],
            "artifacts_count": len(self._artifact_paths(folder)),
            "logs": [name for name in LOG_FILES if name in files],
            "unreadable": unreadable,
        }

    def run_state(self, experiment: str, run: str) -> dict:
        """Return a run's run.yaml fields, its ``config`` and ``stale``, cheaply.

        Unlike :meth:`run`, it neither reads metric tables nor lists the run
        folder, so its cost does not grow with the run. ``stale`` looks at
        ``heartbeat_at`` and the times of the run's own files (:data:`RUN_FILE_NAMES`),
        not of its segments or artifacts. The logger rewrites ``run.yaml`` at
        every flush, so a run that writes is never stale here.
        """
        folder = self.run_dir(experiment, run)
        fields = run_fields(self._yaml(os.path.join(folder, "run.yaml")), run, experiment)
        newest = max((self.fs.mtime(os.path.join(folder, name)) for name in RUN_FILE_NAMES), default=0.0)
        return {
            **fields,
            "stale": self._is_stale(fields, newest, time.time()),
            "config": self._config(folder),
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
        """Return config.yaml with JSON-safe values, nested params left as the strings written.

        A run without config.yaml has ``{}``; raise UnreadableFile for one that
        cannot be parsed and has no good copy.
        """
        path = os.path.join(self.run_dir(experiment, run), "config.yaml")
        unreadable: dict[str, str] = {}
        raw = self._yaml(path, unreadable)
        if unreadable:
            raise UnreadableFile(path, unreadable["config.yaml"])
        return clean_for_json(raw) if isinstance(raw, dict) else {}

    def _config(self, run_folder: str, unreadable: dict[str, str] | None = None) -> dict:
        raw = self._yaml(os.path.join(run_folder, "config.yaml"), unreadable)
        return read_back_literals(clean_for_json(raw)) if isinstance(raw, dict) else {}

    def _yaml(self, path: str, unreadable: dict[str, str] | None = None) -> dict | None:
        """Return a parsed YAML mapping, its last good copy, or None.

        A symlink that resolves outside the store is not followed. A file that
        cannot be parsed and has no good copy is noted in ``unreadable``, by its
        name, with the reason.
        """
        if self.fs.has_links and is_link_outside(path, self.root):
            return None
        try:
            return self.files.load(path, self._parse_yaml, "yaml")
        except FileNotFoundError:
            return None
        except UnreadableFile as exc:
            if unreadable is not None:
                unreadable[os.path.basename(path)] = exc.reason
            return None

    def _parse_yaml(self, path: str) -> dict:
        return parse_yaml_mapping(path, self.fs)

    # Metrics

    def metrics_table(self, experiment: str, run: str, kind: str = "vectors",
                      changed: Collection[str] | None = None) -> pa.Table:
        """Return all metric rows of a run (see :func:`tables.combine`).

        ``changed`` names the files of the run folder that changed since the
        last read, when the caller has them from a watcher (see
        :meth:`RunTable.read_rows`).
        """
        return self._table(self.run_dir(experiment, run), kind, changed)

    def metrics_rows(self, experiment: str, run: str, kind: str = "vectors",
                     changed: Collection[str] | None = None) -> Rows:
        """Return :meth:`metrics_table` with the rows that later rows of the same step were merged into."""
        folder = self.run_dir(experiment, run)
        rows = self._run_table(folder, kind).read_rows(changed)
        self._evict_tables((folder, kind))
        return rows

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

    def _table(self, folder: str, kind: str, changed: Collection[str] | None = None) -> pa.Table:
        table = self._run_table(folder, kind).read(changed)
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
            table, generation, _ = run_table.read_rows()
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
        if self.fs.has_links and is_link_outside(os.path.join(folder, MEDIA_LOG), self.root):
            return []
        with self._lock:
            media_log = self._media.get(folder)
            if media_log is None:
                media_log = self._media[folder] = MediaLog(folder, self.fs)
        return filter_tags(media_log.read(), tags)

    # Files

    def artifacts(self, experiment: str, run: str) -> list[dict]:
        """List ``artifacts/**`` (relative to it) and the run's own files."""
        folder = self.run_dir(experiment, run)
        entries = []
        for relative in self._artifact_paths(folder):
            entries.append(_file_entry(self.fs, os.path.join(folder, "artifacts", relative), relative, False))
        for name in sorted(self.fs.list_names(folder)):
            if name in RUN_FILE_NAMES or tables.segment_kind(name):
                path = os.path.join(folder, name)
                if self.fs.is_file(path):
                    entries.append(_file_entry(self.fs, path, name, True))
        media = os.path.join(folder, "media")
        for relative in self.fs.walk_files(media, folder):
            entries.append(_file_entry(self.fs, os.path.join(media, relative), "media/" + relative, True))
        return [entry for entry in entries if entry is not None]

    def _artifact_paths(self, folder: str) -> list[str]:
        return self.fs.walk_files(os.path.join(folder, "artifacts"), folder)

    def file_path(self, experiment: str, run: str, relative: str, under: str = "") -> str:
        """Return the real path of a file of a run, checked to stay inside the run.

        ``under`` is ``"artifacts"`` for artifact paths and ``""`` for paths
        relative to the run folder.
        """
        folder = self.run_dir(experiment, run)
        parts = split_relative_path(relative)
        base = os.path.join(folder, under) if under else folder
        path = os.path.join(base, *parts)
        if not self.fs.exists(path):
            raise NotFound("file %r not found" % relative)
        if not self.fs.is_inside(path, folder):
            raise OutsideStore("file %r resolves outside the run" % relative)
        if not self.fs.is_file(path):
            raise NotFound("%r is not a file" % relative)
        return self.fs.real_path(path)

    def log_path(self, experiment: str, run: str, name: str) -> str:
        check_name(name, "log file")
        if name not in LOG_FILES:
            raise NotFound("log %r not found; the logs are %s" % (name, ", ".join(LOG_FILES)))
        return self.file_path(experiment, run, name)

    # Edits

    def edit_experiment(self, experiment: str, changes: dict) -> dict:
        """Change experiment.yaml fields (already checked) and return the experiment."""
        folder = self.experiment_dir(experiment)
        edit_yaml(os.path.join(folder, "experiment.yaml"), changes, self.fs)
        return self.experiment(experiment)

    def edit_run(self, experiment: str, run: str, changes: dict) -> dict:
        """Change run.yaml fields (already checked) and return the run's details."""
        folder = self.run_dir(experiment, run)
        edit_yaml(os.path.join(folder, "run.yaml"), changes, self.fs)
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
                files = self.fs.scan_files(run_folder)
                fields = run_fields(self._yaml(os.path.join(run_folder, "run.yaml")), run, experiment)
                newest = max((ident.mtime_ns for ident in files.values()), default=0) / 1e9
                if fields["status"] == "RUNNING":
                    if self._is_stale(fields, newest, now):
                        stale += 1
                    else:
                        active += 1
            storage += self.fs.tree_size(folder)
        return {"experiments": experiments, "runs": runs, "active": active, "stale": stale,
                "storage_bytes": storage}

    def counts(self) -> tuple[int, int]:
        """Return how many experiments and runs the store holds."""
        experiment_ids = self.experiment_ids()
        return len(experiment_ids), sum(len(self.run_ids(e)) for e in experiment_ids)


#: Encoded runs listings kept (one per experiment and ``metrics``/``q`` pair).
LISTING_BODIES = 32

#: Experiments and runs whose last change the change feed keeps. Past it, the
#: feed drops them all and records a change of the root instead.
MAX_NOTED_PATHS = 100_000


class _SummaryEntry(NamedTuple):
    """A run's summary for the runs listing and the files it was read from."""

    #: :func:`_stat_keys` of ``stat_paths`` (relative to the experiment folder) before the summary was read.
    key: tuple
    #: The paths of :meth:`Store._summary_stat_paths`.
    stat_paths: tuple[str, ...]
    summary: dict
    encoded: bytes
    order: tuple
    #: The change feed's count of noted changes before the summary was read or last found current.
    seen: int
    #: The newest mtime (seconds) of the run folder's files when built; 0 unless the run is RUNNING.
    newest: float


def _entry_order(entry: _SummaryEntry) -> tuple:
    return entry.order + (entry.summary["id"],)


#: Statuses of a run that its writer has closed.
_CLOSED_STATUSES = ("FINISHED", "FAILED", "CRASHED")


def _encode_json(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)


def _newest_mtime(filesystem: LocalFilesystem | ObjectFilesystem, folder: str) -> float:
    """Return the newest mtime, in seconds, of the regular files directly inside a folder (0 for none)."""
    return max((ident.mtime_ns for ident in filesystem.scan_files(folder).values()), default=0) / 1e9


def _file_entry(filesystem: LocalFilesystem | ObjectFilesystem, path: str, relative: str,
                is_default: bool) -> dict | None:
    identity = filesystem.stat(path)
    if identity is None:
        return None
    name = relative.rsplit("/", 1)[-1]
    ext = os.path.splitext(name)[1].lstrip(".").lower()
    return {
        "path": relative,
        "name": name,
        "size": identity.size,
        "ext": ext,
        "mime": guess_mime(name),
        "modified": _iso(identity.mtime_ns / 1e9),
        "is_default": is_default,
    }


def _iso(seconds: float) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _started_key(summary: dict) -> tuple:
    instant = parse_instant(summary.get("started_at"))
    return (instant is None, -instant.timestamp() if instant else 0.0)


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
