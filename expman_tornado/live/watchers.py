"""Watchers report which paths of the store changed; the hub decides what that means.

Two kinds: :class:`InotifyWatcher` (the kernel's inotify through pyinotify, its
file descriptor on the Tornado IOLoop) and :class:`PollingWatcher` (stat passes
on a timer), for where inotify cannot serve: pyinotify missing, not Linux, a
network filesystem that sends no events, or the watch limit reached.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
import warnings
from datetime import datetime, timedelta
from stat import S_ISDIR
from typing import Callable, Collection

from tornado.ioloop import IOLoop, PeriodicCallback

from ..store import tables

log = logging.getLogger(__name__)

#: Called with the absolute path that changed (a file or a folder) and whether the
#: change may be partial: ``True`` for a write to a file that is still open
#: (inotify's IN_MODIFY), ``False`` once it is whole or for anything else.
ChangeCallback = Callable[[str, bool], None]


class WatcherUnavailable(RuntimeError):
    """A watcher that cannot run here. The message gives the reason."""


class Watcher:
    """The interface of a watcher: ``start`` with a callback, ``stop`` to release it."""

    name = "none"

    def __init__(self, root: str, on_change: ChangeCallback):
        self.root = root
        self.on_change = on_change

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError


class InotifyWatcher(Watcher):
    """Kernel events for the whole store, new folders included, on the IOLoop."""

    name = "inotify"

    def __init__(self, root: str, on_change: ChangeCallback):
        super().__init__(root, on_change)
        self._notifier = None

    def start(self) -> None:
        if not sys.platform.startswith("linux"):
            raise WatcherUnavailable("inotify exists only on Linux")
        try:
            with warnings.catch_warnings():
                # pyinotify 0.9.6 imports asyncore, deprecated in Python 3.11 and
                # brought back by the pyasyncore package from 3.12 on.
                warnings.simplefilter("ignore", DeprecationWarning)
                import pyinotify
        except ImportError as exc:
            raise WatcherUnavailable("pyinotify cannot be imported: %s" % exc) from None

        mask = (
            pyinotify.IN_CREATE | pyinotify.IN_DELETE | pyinotify.IN_MODIFY
            | pyinotify.IN_CLOSE_WRITE | pyinotify.IN_MOVED_TO | pyinotify.IN_MOVED_FROM
            | pyinotify.IN_DELETE_SELF | pyinotify.IN_ATTRIB
        )  # fmt: skip
        manager = pyinotify.WatchManager()
        # One watch per folder; pyinotify's own recursion (rec=True) takes twice as
        # long on a store of thousands of runs. auto_add watches folders made later.
        added = manager.add_watch(folders_under(self.root), mask, rec=False, auto_add=True, quiet=True)
        failed = [path for path, wd in added.items() if wd < 0]
        if failed:
            manager.close()
            raise WatcherUnavailable(
                "cannot watch %d of %d folders (is fs.inotify.max_user_watches too low?), "
                "first: %s" % (len(failed), len(added), failed[0])
            )
        self._notifier = _notifier_class(pyinotify)(
            manager, IOLoop.current(), default_proc_fun=self._handle_event
        )
        self._notifier.on_lost_events = lambda: self.on_change(self.root, False)
        _bound_move_records(self._notifier)
        log.debug("Watching %d folders with inotify", len(added))

    def _handle_event(self, event) -> None:
        import pyinotify

        self.on_change(event.pathname, bool(event.mask & pyinotify.IN_MODIFY))

    def stop(self) -> None:
        if self._notifier is not None:
            self._notifier.stop()
            self._notifier = None


def _notifier_class(pyinotify):
    """Return pyinotify's Tornado notifier, made to survive a file name that is not UTF-8."""

    class Notifier(pyinotify.TornadoAsyncNotifier):
        on_lost_events = staticmethod(lambda: None)

        def handle_read(self, *args, **kwargs) -> None:
            try:
                super().handle_read(*args, **kwargs)
            except UnicodeDecodeError:
                # pyinotify 0.9.6 decodes names as UTF-8, so a name that is not UTF-8
                # drops the rest of the events read with it. Read the whole store again.
                log.warning("A file name in the store is not valid UTF-8; some change "
                            "events were lost, so the whole store is read again")
                self.on_lost_events()

    return Notifier


#: Seconds pyinotify keeps the record of a rename, to pair IN_MOVED_FROM with IN_MOVED_TO.
MOVE_RECORD_SECONDS = 5.0


def folders_under(root: str) -> list[str]:
    """Return ``root`` and every folder under it, symlinks to folders not followed."""
    folders = [root]
    pending = [root]
    while pending:
        try:
            with os.scandir(pending.pop()) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        folders.append(entry.path)
                        pending.append(entry.path)
        except OSError:
            continue  # Deleted or unreadable meanwhile: nothing under it to watch.
    return folders


def _bound_move_records(notifier) -> None:
    """Make pyinotify's clean-up of rename records cost only the records it removes.

    pyinotify 0.9.6 keeps a record of every rename for a minute, and after each
    batch of events it looks at all of them. The logger renames run.yaml into
    place at every flush, so with many runs that look took longer than the
    events themselves. The records of renames by cookie are kept in the order
    they were made, so the replacement removes old ones from the front and
    stops at the first recent one. The records by destination serve only
    IN_MOVE_SELF, which the watch mask leaves out, so they are dropped.
    This reaches into pyinotify's private ``_sys_proc_fun``; if a later
    version lacks it, pyinotify's own clean-up stays.
    """
    system = getattr(notifier, "_sys_proc_fun", None)
    cookies = getattr(system, "_mv_cookie", None)
    destinations = getattr(system, "_mv", None)
    if not isinstance(cookies, dict) or not isinstance(destinations, dict):
        log.debug("pyinotify has no rename records where expected; its own clean-up stays")
        return

    def cleanup() -> None:
        destinations.clear()
        oldest_kept = datetime.now() - timedelta(seconds=MOVE_RECORD_SECONDS)
        while cookies:
            cookie = next(iter(cookies))
            if cookies[cookie][1] >= oldest_kept:
                break
            del cookies[cookie]

    system.cleanup = cleanup


#: Passes over which the sweep visits every run once, listing each of its folders and
#: stating each of its files. It bounds how long an in-place edit of a quiet run's file,
#: other than its YAML, goes unseen: 60 passes, one minute at the default interval of 1 s.
SWEEP_PASSES = 60

#: Seconds a run counts as live after the last change a pass saw in it.
LIVE_SECONDS = 300.0

#: Files of every run stated on every pass, because writers rewrite them in place.
RUN_METADATA_FILES = ("run.yaml", "config.yaml")

#: Folders of a run that a pass descends into, at any depth.
RUN_SUBTREES = ("artifacts", "media")

#: Depth of a run folder below the store root (root 0, experiment 1, run 2).
RUN_DEPTH = 2


class TimedWatcher(Watcher):
    """A watcher that runs a pass every ``interval`` seconds and reports the paths the pass returns.

    :meth:`run_pass` runs in the executor, so a slow pass never blocks the
    IOLoop, and a pass starts only once the one before it ended. Every path is
    reported with ``partial=False``.
    """

    def __init__(self, root: str, on_change: ChangeCallback, interval: float = 1.0, executor=None):
        super().__init__(root, on_change)
        self.interval = interval
        self._executor = executor
        self._timer: PeriodicCallback | None = None
        self._running = False

    def start(self) -> None:
        self._timer = PeriodicCallback(self._tick, self.interval * 1000)
        self._timer.start()
        IOLoop.current().add_callback(self._tick)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.stop()
            self._timer = None

    def run_pass(self) -> list[str]:
        """Look at the store once and return the paths that changed since the last pass."""
        raise NotImplementedError

    async def _tick(self) -> None:
        if self._running or self._timer is None:
            return
        self._running = True
        try:
            changed = await IOLoop.current().run_in_executor(self._executor, self.run_pass)
        finally:
            self._running = False
        if self._timer is None:
            return  # Stopped during the pass.
        for path in changed:
            self.on_change(path, False)


class PollingWatcher(TimedWatcher):
    """Stat passes over the store every ``interval`` seconds.

    A pass costs a stat per folder plus the files that may have changed, not a
    stat per file: :class:`StoreScan` describes what it reads and how soon each kind
    of change is seen. The first pass is the baseline, so a change made before
    it is not reported.
    """

    name = "poll"

    def __init__(self, root: str, on_change: ChangeCallback, interval: float = 1.0, executor=None,
                 sweep_passes: int = SWEEP_PASSES, live_seconds: float = LIVE_SECONDS):
        super().__init__(root, on_change, interval, executor)
        self._scan = StoreScan(root, sweep_passes, live_seconds)

    def run_pass(self) -> list[str]:
        return self._scan.scan()


class StoreScan:
    """The store's folders and files as the last pass saw them, and the pass that updates them.

    A folder's mtime moves when an entry is created, deleted or renamed in it,
    but not when a file in it is appended to or rewritten in place. So a pass:

    - stats every folder seen so far: the root, the experiments, the runs, and
      every folder under a run's ``artifacts/`` and ``media/``. It lists
      (``os.scandir``) only a folder whose inode or mtime moved, and such a
      folder again on the next pass, for an entry made within the same mtime
      tick just after the listing. It stats only the new or replaced entries
      of a listing (a replaced file has a new inode), and reads new folders
      whole.
    - stats the files that writers change in place: ``run.yaml`` and
      ``config.yaml`` of every run, the files directly in the root and in each
      experiment, and every file directly in a live run's folder (segments and
      logs grow there). A run is live while its folder contains a segment
      (``vectors-0000.arrow`` and the like) and for ``live_seconds`` after the
      last change a pass saw in it.
    - sweeps the runs whose turn it is, about one in ``sweep_passes``: it lists
      each of their folders and stats each of their files. Every run is swept
      once in ``sweep_passes`` passes. So any other in-place edit of a quiet
      run is seen within that many passes: an artifact rewritten under its
      name, a parquet file rewritten by a tool, a log appended after the run
      went quiet. So is an entry that a folder's unchanged mtime hid.

    With D folders, R runs and F files, a pass makes about D + 2R stats, plus the
    files of live runs and F / ``sweep_passes`` for the sweep. A full walk made
    D + F stats and D listings on every pass. The first pass reads everything,
    as a full walk does, and reports nothing.

    Reported paths: each file that appeared, vanished or whose inode, size or
    mtime changed, and each folder that appeared, vanished or was replaced,
    with every known path under a folder that came or went. A folder whose
    mtime moved is not reported itself, only the entries that changed in it.
    Hidden names are skipped in the root, the experiments and the runs, but
    not inside ``artifacts/`` and ``media/``. Symbolic links to folders are
    followed down to the runs' ``artifacts/`` and ``media/``, and not below.

    NOTE: an NFS client caches the attributes of files and folders for some
    seconds (the ``ac*`` mount options set how long), so a change on another
    host can reach :meth:`scan` only once that cache has expired.
    """

    def __init__(self, root: str, sweep_passes: int = SWEEP_PASSES,
                 live_seconds: float = LIVE_SECONDS):
        self.root = root
        self.sweep_passes = max(1, sweep_passes)
        self.live_seconds = live_seconds
        self.passes = 0
        self._tree = _Folder(root, 0)
        self._runs_made = 0
        self._changed: list[str] = []
        self._now = 0.0
        self._sweep_slot = 0

    def scan(self) -> list[str]:
        """Run one pass; return the paths changed since the previous pass (none on the first)."""
        started = time.perf_counter()
        baseline = self.passes == 0
        self._changed = []
        self._now = time.monotonic()
        self._sweep_slot = self.passes % self.sweep_passes
        if not self._visit(self._tree, sweep=baseline) and self._tree.identity is not None:
            log.warning("The store root %s was not found, so its paths are reported as removed",
                        self.root)
            self._forget(self._tree)
            self._tree = _Folder(self.root, 0)
        self.passes += 1
        changed, self._changed = self._changed, []
        elapsed_ms = (time.perf_counter() - started) * 1e3
        if baseline:
            folders, files = self._tree.count()
            log.info("Polling %s: %d folders and %d files read in %.0f ms",
                     self.root, folders, files, elapsed_ms)
            return []
        if changed:
            log.debug("Polling pass %d: %d changed paths in %.1f ms",
                      self.passes, len(changed), elapsed_ms)
        return changed

    # One folder

    def _visit(self, folder: _Folder, sweep: bool) -> bool:
        """Bring a folder and everything under it up to date; return False if it is gone."""
        identity = _folder_identity(folder.path)
        if identity is None:
            return False
        if identity is _UNREADABLE:
            return True  # Kept as last seen; the next pass tries again.
        stated: Collection[str] = ()
        if sweep or folder.relist or identity != folder.identity:
            stated = self._relist(folder, identity)
        if sweep or folder.depth <= RUN_DEPTH:
            self._stat_files(folder, sweep, stated)
        if folder.folders:
            self._visit_folders(folder, sweep)
        return True

    def _relist(self, folder: _Folder, identity: tuple[int, int]) -> set[str]:
        """Note a new or replaced folder, then list it; return the names stated meanwhile."""
        known = folder.identity
        if known is None and self.passes:
            self._changed.append(folder.path)  # A new folder.
        elif known is not None and known[0] != identity[0]:
            self._changed.append(folder.path)  # Replaced by another folder of that name.
        folder.relist = identity != known and self.passes > 0
        folder.identity = identity
        return self._list(folder)

    def _list(self, folder: _Folder) -> set[str]:
        """List a folder: note the entries that came or went; return the names stated meanwhile."""
        keep_hidden = folder.depth > RUN_DEPTH
        try:
            with os.scandir(folder.path) as entries:
                listing = {entry.name: (_is_subtree(entry, folder.depth), entry.inode(), entry.path)
                           for entry in entries if keep_hidden or not entry.name.startswith(".")}
        except OSError as exc:
            log.debug("Failed to list %s (%s), so it is listed again on the next pass",
                      folder.path, exc)
            folder.relist = True
            return set()

        for name in [name for name in folder.folders if not listing.get(name, (False,))[0]]:
            self._forget(folder.folders.pop(name))
        for name in [name for name in folder.files if name not in listing or listing[name][0]]:
            del folder.files[name]
            self._changed.append(os.path.join(folder.path, name))
        stated = set()
        for name, (is_subtree, inode, path) in listing.items():
            if is_subtree:
                if name not in folder.folders:
                    folder.folders[name] = self._new_folder(path, folder.depth + 1)
                continue
            known = folder.files.get(name)
            if known is None or known[0] != inode:
                stated.add(name)
                self._stat_file(folder, name, path)
        if folder.depth == RUN_DEPTH:
            folder.has_segments = any(tables.segment_kind(name) for name in folder.files)
        return stated

    def _stat_files(self, folder: _Folder, sweep: bool, stated: Collection[str]) -> None:
        """Stat the files of a folder that may have changed in place (see the class docstring)."""
        if sweep or folder.depth < RUN_DEPTH:
            names = list(folder.files)
        elif folder.depth == RUN_DEPTH:
            live = folder.has_segments or self._now - folder.changed_at < self.live_seconds
            if live:
                names = list(folder.files)
            else:
                names = [name for name in RUN_METADATA_FILES if name in folder.files]
        else:
            return
        for name in names:
            if name not in stated:
                self._stat_file(folder, name)

    def _stat_file(self, folder: _Folder, name: str, path: str = "") -> None:
        path = path or os.path.join(folder.path, name)
        try:
            stat = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            if folder.files.pop(name, None) is not None:
                self._changed.append(path)
            folder.relist = True
            return
        except OSError as exc:
            log.debug("Failed to stat %s (%s)", path, exc)
            return
        identity = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        if folder.files.get(name) != identity:
            folder.files[name] = identity
            self._changed.append(path)

    def _visit_folders(self, folder: _Folder, sweep: bool) -> None:
        removed_names = []
        for name, child in folder.folders.items():
            if child.depth != RUN_DEPTH:
                if not self._visit(child, sweep):
                    removed_names.append(name)
                continue
            changes_before = len(self._changed)
            if not self._visit(child, sweep or child.sweep_slot == self._sweep_slot):
                removed_names.append(name)
            elif self.passes == 0:
                child.changed_at = self._now - max(0.0, time.time() - child.newest_mtime())
            elif len(self._changed) > changes_before:
                child.changed_at = self._now
        for name in removed_names:
            self._forget(folder.folders.pop(name))

    # Folders that come and go

    def _new_folder(self, path: str, depth: int) -> _Folder:
        folder = _Folder(path, depth)
        if depth == RUN_DEPTH:
            self._runs_made += 1
            folder.sweep_slot = self._runs_made % self.sweep_passes
        return folder

    def _forget(self, folder: _Folder) -> None:
        """Report a folder that is gone, with every path known under it."""
        self._changed.append(folder.path)
        self._changed.extend(os.path.join(folder.path, name) for name in folder.files)
        for child in folder.folders.values():
            self._forget(child)


class _Folder:
    """A folder of the store as the last pass saw it."""

    __slots__ = ("path", "depth", "identity", "files", "folders", "relist",
                 "changed_at", "sweep_slot", "has_segments")

    def __init__(self, path: str, depth: int):
        self.path = path
        self.depth = depth  # 0 for the root, 1 for an experiment, 2 for a run, more below
        self.identity: tuple[int, int] | None = None  # (st_ino, st_mtime_ns) at the last listing
        self.files: dict[str, tuple[int, int, int]] = {}  # name: (st_ino, st_size, st_mtime_ns)
        self.folders: dict[str, _Folder] = {}
        self.relist = False  # List the folder on the next pass even if its mtime did not move.
        # For run folders only:
        self.changed_at = -math.inf  # time.monotonic() of the last change seen in the run
        self.sweep_slot = 0  # The run is swept on the passes whose number has this remainder.
        self.has_segments = False

    def count(self) -> tuple[int, int]:
        """Return the number of folders (this one included) and files known under this folder."""
        folders, files = 1, len(self.files)
        for child in self.folders.values():
            child_folders, child_files = child.count()
            folders += child_folders
            files += child_files
        return folders, files

    def newest_mtime(self) -> float:
        """Return the newest mtime, in seconds, of this folder and the files directly in it."""
        newest = self.identity[1] if self.identity is not None else 0
        for _, _, mtime_ns in self.files.values():
            newest = max(newest, mtime_ns)
        return newest / 1e9


#: The identity :func:`_folder_identity` returns for a folder that exists but cannot be read now.
_UNREADABLE = (-1, -1)


def _folder_identity(path: str) -> tuple[int, int] | None:
    """Return ``(st_ino, st_mtime_ns)`` of a folder, or None if it is gone or not a folder now."""
    try:
        stat = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        log.debug("Failed to stat folder %s (%s)", path, exc)
        return _UNREADABLE
    if not S_ISDIR(stat.st_mode):
        return None
    return (stat.st_ino, stat.st_mtime_ns)


def _is_subtree(entry: os.DirEntry, depth: int) -> bool:
    """Say whether a pass descends into a folder entry found at ``depth`` (that of its parent)."""
    try:
        if depth < RUN_DEPTH:
            return entry.is_dir()
        if depth == RUN_DEPTH:
            return entry.name in RUN_SUBTREES and entry.is_dir()
        return entry.is_dir(follow_symlinks=False)
    except OSError:
        return False


def start_watcher(kind: str, root: str, on_change: ChangeCallback, poll_interval: float,
                  executor=None, filesystem=None) -> Watcher:
    """Start the watcher of kind ``inotify``, ``poll``, or ``auto`` (inotify, else poll).

    A store on object storage (``filesystem`` not local) is always watched by
    listing it every ``poll_interval`` seconds, whatever ``kind`` is.
    """
    if filesystem is not None and not filesystem.is_local:
        from .listing import ListingWatcher

        if kind != "auto":
            log.warning("Watcher %r cannot watch object storage; listing it every %g s instead", kind, poll_interval)
        listing_watcher = ListingWatcher(root, on_change, filesystem, poll_interval, executor)
        listing_watcher.start()
        return listing_watcher
    if kind in ("auto", "inotify"):
        watcher: Watcher = InotifyWatcher(root, on_change)
        try:
            watcher.start()
            return watcher
        except WatcherUnavailable as exc:
            if kind == "inotify":
                raise
            log.warning("inotify cannot watch the store (%s); polling every %g s instead",
                        exc, poll_interval)
    watcher = PollingWatcher(root, on_change, poll_interval, executor)
    watcher.start()
    return watcher
