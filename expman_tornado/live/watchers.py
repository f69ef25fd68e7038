"""Watchers report which paths of the store changed; the hub decides what that means.

Two kinds: :class:`InotifyWatcher` (the kernel's inotify through pyinotify, its
file descriptor on the Tornado IOLoop) and :class:`PollingWatcher` (stat passes
on a timer), for where inotify cannot serve: pyinotify missing, not Linux, a
network filesystem that sends no events, or the watch limit reached.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from typing import Callable

from tornado.ioloop import IOLoop, PeriodicCallback

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
        added = manager.add_watch(self.root, mask, rec=True, auto_add=True, quiet=True)
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


class PollingWatcher(Watcher):
    """Stat passes over the store every ``interval`` seconds.

    Each pass stats the folders of experiments and runs and the files directly
    in each run, plus the files under each run's ``artifacts/`` and ``media/``.
    A path whose identity (inode, size, mtime) changed, appeared or vanished is
    reported. The pass runs in a thread so a large store never blocks the IOLoop.
    """

    name = "poll"

    def __init__(self, root: str, on_change: ChangeCallback, interval: float = 1.0, executor=None):
        super().__init__(root, on_change)
        self.interval = interval
        self._executor = executor
        self._seen: dict[str, tuple] | None = None
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

    async def _tick(self) -> None:
        if self._running or self._timer is None:
            return
        self._running = True
        try:
            current = await IOLoop.current().run_in_executor(self._executor, snapshot_tree, self.root)
        finally:
            self._running = False
        previous, self._seen = self._seen, current
        if previous is None:
            return
        for path in changed_paths(previous, current):
            self.on_change(path, False)


def snapshot_tree(root: str) -> dict[str, tuple]:
    """Return ``{path: (inode, size, mtime_ns)}`` for the folders and files a store pass covers."""
    seen: dict[str, tuple] = {}
    _stat_into(seen, root)
    for experiment in _entries(root):
        experiment_dir = os.path.join(root, experiment)
        if not _stat_into(seen, experiment_dir) or not os.path.isdir(experiment_dir):
            continue
        for run in _entries(experiment_dir):
            run_dir = os.path.join(experiment_dir, run)
            if not os.path.isdir(run_dir):
                _stat_into(seen, run_dir)
                continue
            _stat_into(seen, run_dir)
            for name in _entries(run_dir):
                path = os.path.join(run_dir, name)
                _stat_into(seen, path)
                if name in ("artifacts", "media") and os.path.isdir(path):
                    for folder, _, files in os.walk(path):
                        for file_name in files:
                            _stat_into(seen, os.path.join(folder, file_name))
    return seen


def changed_paths(previous: dict[str, tuple], current: dict[str, tuple]) -> list[str]:
    changed = [path for path, ident in current.items() if previous.get(path) != ident]
    changed.extend(path for path in previous if path not in current)
    return changed


def _entries(folder: str) -> list[str]:
    try:
        return [name for name in os.listdir(folder) if not name.startswith(".")]
    except OSError:
        return []


def _stat_into(seen: dict[str, tuple], path: str) -> bool:
    try:
        stat = os.stat(path)
    except OSError:
        return False
    seen[path] = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
    return True


def start_watcher(kind: str, root: str, on_change: ChangeCallback, poll_interval: float,
                  executor=None) -> Watcher:
    """Start the watcher of kind ``inotify``, ``poll``, or ``auto`` (inotify, else poll)."""
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
