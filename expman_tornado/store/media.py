"""A run's media log: ``media.jsonl``, one JSON line per logged image, audio, video or figure.

The logger writes each media file under ``media/`` and then appends a line
``{"file", "tag", "step", "bytes", "logged_at"}`` naming it (``file`` is
relative to the run folder). Lines are only ever appended while the run is
live, so :class:`MediaLog` reads only the bytes added since its last read.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

import orjson

from .files import Identity, guess_mime
from .filesystem import LOCAL, LocalFilesystem, ObjectFilesystem
from .names import InvalidName, split_relative_path

log = logging.getLogger(__name__)

MEDIA_LOG = "media.jsonl"


class MediaLog:
    """The entries of one run's ``media.jsonl``, kept while the file's identity is unchanged.

    A line without its final newline is taken only when it is a whole JSON
    object, so a half-written last line is skipped until the writer finishes it.
    Lines that are not JSON objects, or whose ``file`` is not a relative path
    inside the run folder, are dropped with a warning.
    """

    def __init__(self, run_folder: str, filesystem: LocalFilesystem | ObjectFilesystem = LOCAL):
        self.run_folder = run_folder
        self.fs = filesystem
        self.path = os.path.join(run_folder, MEDIA_LOG)
        self._lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        self._identity: Identity | None = None
        self._offset = 0
        self._last_line = b""  # The line that ends at ``_offset``, with its newline.
        self._complete: list[dict] = []
        self._entries: list[dict] = []

    def read(self) -> list[dict]:
        """Return every entry in file order (``[]`` when the run has no media log).

        The list and its entries are shared with later calls: callers must not
        change them.
        """
        with self._lock:
            identity = self.fs.stat(self.path)
            if identity is None:
                self._reset()
                return self._entries
            if identity == self._identity:
                return self._entries
            if self._identity is None or identity.inode != self._identity.inode or identity.size < self._offset:
                self._reset()
            try:
                data = self._read_new_bytes()
            except OSError as exc:
                log.warning("Cannot read %s (%s); serving the entries read before", self.path, exc)
                return self._entries
            self._identity = identity
            self._take(data)
            return self._entries

    def _read_new_bytes(self) -> bytes:
        """Return the bytes after the offset, or the whole file if it was rewritten in place.

        The last line read before is read again and compared, so a file
        rewritten under the same inode is noticed unless that line is unchanged.
        """
        data = self.fs.read_bytes(self.path, self._offset - len(self._last_line))
        if data.startswith(self._last_line):
            return data[len(self._last_line):]
        self._reset()
        return self.fs.read_bytes(self.path)

    def _take(self, data: bytes) -> None:
        end = data.rfind(b"\n") + 1
        dropped = 0
        for line in data[:end].splitlines():
            if line.strip():
                entry = self._parse(line)
                if entry is None:
                    dropped += 1
                else:
                    self._complete.append(entry)
        self._offset += end
        if end:
            self._last_line = data[data.rfind(b"\n", 0, end - 1) + 1:end]
        # The last line, until its newline arrives: kept only if it is already whole.
        pending = self._parse(data[end:]) if data[end:].strip() else None
        self._entries = self._complete + [pending] if pending is not None else list(self._complete)
        if dropped:
            log.warning("Skipped %d lines of %s that are not JSON objects naming a file inside the run",
                        dropped, self.path)

    def _parse(self, line: bytes) -> dict | None:
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(value, dict) or not self._is_run_file(value.get("file")):
            return None
        return {
            "tag": _text(value.get("tag")),
            "step": _integer(value.get("step")),
            "file": value["file"],
            "mime": guess_mime(value["file"]),
            "bytes": _integer(value.get("bytes")),
            "logged_at": _text(value.get("logged_at")),
        }

    def _is_run_file(self, relative: Any) -> bool:
        if not isinstance(relative, str):
            return False
        try:
            parts = split_relative_path(relative)
        except InvalidName:
            return False
        return self.fs.is_inside(os.path.join(self.run_folder, *parts), self.run_folder)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _integer(value: Any) -> int | None:
    return value if type(value) is int else None


def with_url(entry: dict, url: str) -> dict:
    """Return a media entry as the API sends it: ``{tag, step, file, url, mime, bytes, logged_at}``."""
    return {
        "tag": entry["tag"],
        "step": entry["step"],
        "file": entry["file"],
        "url": url,
        "mime": entry["mime"],
        "bytes": entry["bytes"],
        "logged_at": entry["logged_at"],
    }


def filter_tags(entries: list[dict], tags: list[str] | None) -> list[dict]:
    """Return the entries of the given tags (all of them when None)."""
    if tags is None:
        return entries
    requested = set(tags)
    return [entry for entry in entries if entry["tag"] in requested]
