"""The listing watcher: change detection for a store on object storage.

Object storage sends no events, and a stat per object would cost one request
each. So :class:`ListingWatcher` lists every object under the store root on a
timer (one LIST request per 1,000 objects on S3) and compares each object's
identity (ETag, size, last modified time) with the previous listing. The same
listing then serves the store's reads until the next pass (see
:class:`~expman_tornado.store.filesystem.ObjectFilesystem`), so what the hub
reads after a reported change is what the watcher saw.
"""

from __future__ import annotations

import logging

from ..store.filesystem import Identity, ObjectFilesystem, StoreUnavailable
from .watchers import ChangeCallback, TimedWatcher

log = logging.getLogger(__name__)

#: A failed listing is logged at its first occurrence and then every this many passes.
FAILURE_LOG_EVERY = 100


class ListingWatcher(TimedWatcher):
    """Listings of a store on object storage every ``interval`` seconds.

    Each pass reports the paths of objects that appeared, vanished or changed
    identity, and the folders (key prefixes) whose entries changed, as the
    polling watcher reports a folder whose mtime changed. The first pass is the
    baseline: a change made before it is not reported. A pass that fails (the
    network or the server) is logged and skipped. The next pass compares with
    the last listing that succeeded, so no change is lost.
    """

    name = "listing"

    def __init__(self, root: str, on_change: ChangeCallback, filesystem: ObjectFilesystem,
                 interval: float = 1.0, executor=None):
        super().__init__(root, on_change, interval, executor)
        self.fs = filesystem
        self._seen: dict[str, Identity] | None = None
        self._failures = 0
        #: Listings completed so far; the first one is the baseline.
        self.passes = 0

    def start(self) -> None:
        # The watcher keeps the listing fresh, so reads in between use it rather than list again.
        self.fs.max_age = max(self.fs.max_age, 2 * self.interval)
        super().start()

    def run_pass(self) -> list[str]:
        try:
            current = self.fs.refresh()
        except StoreUnavailable as exc:
            self._failures += 1
            if self._failures % FAILURE_LOG_EVERY == 1:
                log.warning("Listing the store failed (%s); live updates wait for the next listing "
                            "(failure %d)", exc, self._failures)
            return []
        if self._failures:
            log.info("Listing the store works again after %d failures", self._failures)
            self._failures = 0
        previous, self._seen = self._seen, current
        self.passes += 1
        if previous is None:
            return []
        return changed_paths(previous, current, self.root)


def changed_paths(previous: dict[str, Identity], current: dict[str, Identity], root: str) -> list[str]:
    """Return the files that differ between two listings and the folders whose entries changed.

    A folder is reported when a file or folder directly in it appeared or
    vanished, and so is a folder that appeared or vanished itself (its last
    object gone). Folders come after the files, deepest first, and each path once.
    """
    changed = [path for path, identity in current.items() if previous.get(path) != identity]
    added_or_removed = [path for path in changed if path not in previous]
    removed = [path for path in previous if path not in current]
    changed.extend(removed)
    if not added_or_removed and not removed:
        return changed
    previous_folders, current_folders = _folders(previous, root), _folders(current, root)
    folders: set[str] = set()
    for path in added_or_removed + removed:
        parent = path.rpartition("/")[0]
        # Up to the root: a new run's first object creates the run folder and
        # perhaps the experiment folder, and each is new in the folder above it.
        while len(parent) >= len(root):
            folders.add(parent)
            if parent == root or parent in previous_folders and parent in current_folders:
                break
            parent = parent.rpartition("/")[0]
    changed.extend(sorted(folders, key=lambda folder: (-folder.count("/"), folder)))
    return changed


def _folders(files: dict[str, Identity], root: str) -> set[str]:
    """Return every folder that contains an object of a listing, the root included."""
    found = {root}
    for path in files:
        parent = path.rpartition("/")[0]
        while parent not in found and len(parent) > len(root):
            found.add(parent)
            parent = parent.rpartition("/")[0]
    return found
