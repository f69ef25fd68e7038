"""File identity, the cache of parsed files keyed by it, and media types of file names."""

from __future__ import annotations

import logging
import mimetypes
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

# identity_of is imported from here by the file handlers.
from .filesystem import LOCAL, Identity, LocalFilesystem, ObjectFilesystem, identity_of  # noqa: F401

log = logging.getLogger(__name__)

#: A file modified less than this many seconds ago may still be being written.
SETTLING_SECONDS = 2.0

#: How often, and how long apart, a read of a settling file is retried.
RETRIES = 3
RETRY_DELAY = 0.05


def guess_mime(name: str) -> str:
    """Return the media type of a file name (octet-stream when unknown)."""
    ext = os.path.splitext(name)[1].lower()
    special = {".parquet": "application/vnd.apache.parquet", ".arrow": "application/vnd.apache.arrow.stream",
               ".log": "text/plain", ".yaml": "application/yaml", ".yml": "application/yaml",
               ".jsonl": "application/jsonl", ".csv": "text/csv", ".md": "text/markdown"}
    if ext in special:
        return special[ext]
    mime, _ = mimetypes.guess_type(name, strict=False)
    return mime or "application/octet-stream"


def stat_identity(path: str) -> Identity | None:
    """Return the identity of a regular local file, or None when it is missing or cannot be reached.

    A folder on the way that this process may not search (EACCES) counts as missing.
    """
    return LOCAL.stat(path)


class ParseError(Exception):
    """A file that exists but cannot be parsed (yet)."""


class UnreadableFile(Exception):
    """A file that failed to parse and has no earlier good copy to fall back on."""

    def __init__(self, path: str, reason: str):
        super().__init__("%s: %s" % (path, reason))
        self.path = path
        self.reason = reason


@dataclass
class _Entry:
    identity: Identity
    value: Any = None
    error: str | None = None
    good_identity: Identity | None = None
    good_value: Any = None


class FileCache:
    """Parsed files, each kept while its identity (inode, size, mtime_ns) is unchanged.

    An unchanged file costs one ``stat``. A file that fails to parse is answered
    from its last good copy, when there is one, and the failure is logged once per
    file version. A file modified within the last ``SETTLING_SECONDS`` is retried a
    few times first, because the writer may be halfway through rewriting it.
    Files are stat-ed through ``filesystem`` (local by default); the parse
    functions read them through the same one.
    """

    def __init__(self, filesystem: LocalFilesystem | ObjectFilesystem = LOCAL) -> None:
        self.fs = filesystem
        self._entries: dict[tuple[str, str], _Entry] = {}
        self._lock = threading.Lock()

    def load(self, path: str, parse: Callable[[str], Any], kind: str = "") -> Any:
        """Return ``parse(path)``, cached; raise FileNotFoundError or UnreadableFile."""
        return self.load_version(path, parse, kind)[0]

    def load_version(self, path: str, parse: Callable[[str], Any], kind: str = "") -> tuple[Any, Identity]:
        """Return ``parse(path)`` and the identity of the file version it was parsed from.

        That identity is the current file's, or, while the file cannot be parsed,
        the identity of the last good copy being served instead.
        """
        key = (kind, path)
        ident = self.fs.stat(path)
        if ident is None:
            with self._lock:
                self._entries.pop(key, None)
            raise FileNotFoundError(path)

        with self._lock:
            entry = self._entries.get(key)
        if entry is None or entry.identity != ident:
            entry = self._parse_new_version(key, path, parse, ident, entry)
        return self._answer(path, entry)

    def forget(self, prefix: str, kind: str | None = None) -> None:
        """Drop the entries under a folder (of one kind, or all), e.g. to free memory."""
        with self._lock:
            for key in [k for k in self._entries if k[1].startswith(prefix) and kind in (None, k[0])]:
                del self._entries[key]

    def _parse_new_version(self, key, path, parse, ident, previous) -> _Entry:
        error = None
        for attempt in range(RETRIES + 1):
            try:
                value = parse(path)
            except FileNotFoundError:
                # Deleted or renamed since the stat: missing, like a file that never was.
                with self._lock:
                    self._entries.pop(key, None)
                raise
            except (ParseError, OSError) as exc:
                error = str(exc) or type(exc).__name__
            else:
                entry = _Entry(ident, value, None, ident, value)
                with self._lock:
                    self._entries[key] = entry
                return entry
            if attempt == RETRIES or not _is_settling(ident):
                break
            time.sleep(RETRY_DELAY)
            ident = self.fs.stat(path) or ident

        entry = _Entry(ident, None, error)
        if previous is not None and previous.good_identity is not None:
            entry.good_identity = previous.good_identity
            entry.good_value = previous.good_value
        with self._lock:
            current = self._entries.get(key)
            # Two threads may parse the same broken version at once; one warning is enough.
            already_reported = current is not None and current.identity == ident and current.error is not None
            self._entries[key] = entry
        if not already_reported:
            fallback = "serving its last good copy" if entry.good_identity else "it has no earlier good copy"
            log.warning("Cannot parse %s (%s); %s", path, error, fallback)
        return entry

    @staticmethod
    def _answer(path: str, entry: _Entry) -> tuple[Any, Identity]:
        if entry.error is None:
            return entry.value, entry.identity
        if entry.good_identity is not None:
            return entry.good_value, entry.good_identity
        raise UnreadableFile(path, entry.error)


def _is_settling(ident: Identity) -> bool:
    return time.time() - ident.mtime_ns / 1e9 < SETTLING_SECONDS
