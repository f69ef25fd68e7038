"""The summary index: run summaries of closed runs kept on disk between server starts.

The runs listing reads run.yaml, config.yaml and the metric parquet file of every
run, which costs milliseconds per run. A closed run's summary changes only when
one of those files changes. So the summaries of closed runs are written to one
file per store root, in a cache folder outside the store, each with the
identities (inode, size, mtime_ns) of the files it was read from. At the next
start, a summary whose files still have those identities is used without
reading them.
"""

from __future__ import annotations

import gc
import hashlib
import logging
import os
import tempfile
import threading
from typing import Any, NamedTuple

import orjson

from .names import is_inside

log = logging.getLogger(__name__)

#: Written at the top of every index file, so a file of another program is not taken for one.
FORMAT = "expman-tornado summary index"

#: Changes whenever the fields of a run summary, or the way they are read, change,
#: so that summaries written by an older server are read again rather than served.
#: Version 2 reads YAML with the YAML 1.2 core schema.
VERSION = 2


def default_cache_dir() -> str:
    """Return ``$XDG_CACHE_HOME/expman-tornado``, or ``~/.cache/expman-tornado`` without it."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "expman-tornado")


def index_path(cache_dir: str, root: str) -> str:
    """Return the index file of a store root: one file per root, named by a hash of the root."""
    digest = hashlib.sha256(root.encode("utf-8", "surrogateescape")).hexdigest()[:24]
    return os.path.join(cache_dir, "summaries-%s.json" % digest)


class IndexEntry(NamedTuple):
    """The summary of one closed run and the files it was read from."""

    #: Paths of the files the summary was read from, relative to the experiment folder.
    paths: tuple[str, ...]
    #: ``(inode, size, mtime_ns)`` of each of ``paths`` before the read, None for a missing file.
    key: tuple
    summary: dict
    #: ``summary`` as the runs listing encodes it.
    encoded: bytes
    #: The run's sort key in the listing.
    order: tuple


class SummaryIndex:
    """Summaries of closed runs by ``"experiment/run"``, loaded from and saved to one file.

    The caller checks an entry's key against the files before using its summary. Every method is safe to
    call from threads; :meth:`save` writes a temporary file next to the index
    and renames it over the index, so a reader never sees a half-written one.
    """

    def __init__(self, cache_dir: str, root: str, executor=None):
        self.root = root
        self.path = index_path(os.path.abspath(cache_dir), root)
        self.executor = executor
        self._entries: dict[str, IndexEntry] | None = None
        self._dirty = False
        self._save_scheduled = False
        self._lock = threading.Lock()
        # Held while a file is written, so two saves never write out of order.
        self._write_lock = threading.Lock()
        self._failed_writes = 0

    def load(self) -> None:
        """Read the index file now, rather than at the first :meth:`get` (a no-op once read)."""
        with self._lock:
            self._loaded()

    def get(self, run_key: str) -> IndexEntry | None:
        with self._lock:
            return self._loaded().get(run_key)

    def put(self, run_key: str, entry: IndexEntry) -> None:
        with self._lock:
            entries = self._loaded()
            found = entries.get(run_key)
            if found is not None and found.encoded is entry.encoded and found.key == entry.key:
                return
            entries[run_key] = entry
            self._dirty = True

    def discard(self, run_key: str) -> None:
        with self._lock:
            if self._loaded().pop(run_key, None) is not None:
                self._dirty = True

    def retain(self, experiment: str, runs: set[str]) -> None:
        """Drop the entries of an experiment's runs that are not in ``runs`` (deleted or renamed)."""
        prefix = experiment + "/"
        with self._lock:
            entries = self._loaded()
            gone = [name for name in entries if name.startswith(prefix) and name[len(prefix):] not in runs]
            for name in gone:
                del entries[name]
            self._dirty = self._dirty or bool(gone)

    def save_soon(self) -> None:
        """Save the index on the executor when it changed; in the calling thread without an executor."""
        with self._lock:
            if not self._dirty or self._save_scheduled:
                return
            self._save_scheduled = True
        if self.executor is not None:
            try:
                self.executor.submit(self._scheduled_save)
                return
            except RuntimeError:  # The executor is shut down: the server is stopping.
                log.debug("Summary index %s not saved: the thread pool is shut down", self.path)
                with self._lock:
                    self._save_scheduled = False
                return
        self._scheduled_save()

    def _scheduled_save(self) -> None:
        with self._lock:
            self._save_scheduled = False
        self.save()

    def save(self) -> None:
        """Write the index file if anything changed since it was loaded or last saved."""
        with self._write_lock:
            with self._lock:
                if not self._dirty or self._entries is None:
                    return
                runs = {name: [entry.paths, entry.key, entry.encoded.decode("utf-8"), entry.order]
                        for name, entry in self._entries.items()}
                self._dirty = False
            document = {"format": FORMAT, "version": VERSION, "root": self.root, "runs": runs}
            try:
                data = orjson.dumps(document, option=orjson.OPT_NON_STR_KEYS)
                self._write(data)
            except (OSError, TypeError) as exc:
                with self._lock:
                    self._dirty = True
                self._failed_writes += 1
                # Logged at the first failure and then every 100th, so a read-only
                # cache folder does not fill the log.
                if self._failed_writes % 100 == 1:
                    log.warning("Cannot write the summary index %s (%s); runs listings read every "
                                "run's files after a restart (failure %d)", self.path, exc, self._failed_writes)

    def _write(self, data: bytes) -> None:
        folder = os.path.dirname(self.path)
        if is_inside(folder, self.root):
            raise OSError("the cache folder %s is inside the store %s" % (folder, self.root))
        os.makedirs(folder, mode=0o700, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=folder, prefix=".summaries-", suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as f:
                f.write(data)
            os.replace(temporary, self.path)
        except BaseException:
            try:
                os.unlink(temporary)
            except OSError:
                pass
            raise

    def _loaded(self) -> dict[str, IndexEntry]:
        """Return the entries, reading the file on first use (call with ``_lock`` held)."""
        if self._entries is None:
            self._entries = self._read()
        return self._entries

    def _read(self) -> dict[str, IndexEntry]:
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            log.warning("Cannot read the summary index %s (%s); ignoring it", self.path, exc)
            return {}
        # The file contains a few hundred objects per run. The collections the garbage
        # collector would make while they are created would find nothing to free.
        collecting = gc.isenabled()
        gc.disable()
        try:
            return _parse(orjson.loads(data), self.root)
        except (orjson.JSONDecodeError, ValueError, TypeError, KeyError, AttributeError) as exc:
            # Written again at the next save, which the next listing triggers.
            log.warning("Ignoring the summary index %s (%s); it will be rewritten", self.path, exc)
            self._dirty = True
            return {}
        finally:
            if collecting:
                gc.enable()


def _parse(document: Any, root: str) -> dict[str, IndexEntry]:
    """Return the entries of a parsed index file; raise ValueError for a file that is not one for ``root``."""
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ValueError("not a summary index")
    if document.get("version") != VERSION:
        raise ValueError("index version %r, expected %d" % (document.get("version"), VERSION))
    if document.get("root") != root:
        raise ValueError("index of the store %r, not of %r" % (document.get("root"), root))
    entries = {}
    for name, (paths, key, encoded, order) in document["runs"].items():
        summary = orjson.loads(encoded)
        if not isinstance(summary, dict) or len(paths) != len(key):
            raise ValueError("invalid entry %r" % name)
        identities = tuple(tuple(identity) if identity is not None else None for identity in key)
        entries[name] = IndexEntry(tuple(paths), identities, summary, encoded.encode("utf-8"), tuple(order))
    return entries
