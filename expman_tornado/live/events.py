"""Server-Sent Events: event names, ids derived from the files, and their wire format."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

import orjson

LOG_FILES = ("run.log", "console.log")

_ID = re.compile(r"^m(?P<rows>\d+)(?P<logs>(?:\.[a-z]\d+)*)$")
_LOG_KEYS = {"run.log": "r", "console.log": "c"}
_LOG_NAMES = {key: name for name, key in _LOG_KEYS.items()}


@dataclass(frozen=True)
class Position:
    """How far a client has read a run: metric rows, and bytes of each log file.

    Both come from the files (the row count of the run's metric table and the
    log byte offsets), not from a counter of one server process, so another
    process serving the same store resumes a stream at the same place.
    """

    rows: int = 0
    logs: dict = field(default_factory=dict)

    @property
    def event_id(self) -> str:
        """Return the id sent with an event, e.g. ``m120.r5123.c0``."""
        parts = ["m%d" % self.rows]
        for name in LOG_FILES:
            parts.append("%s%d" % (_LOG_KEYS[name], self.logs.get(name, 0)))
        return ".".join(parts)

    @classmethod
    def parse(cls, event_id: str | None) -> Position | None:
        """Read a ``Last-Event-ID``; return None when it is not one of ours."""
        if not event_id:
            return None
        match = _ID.match(event_id.strip())
        if match is None:
            return None
        logs = {}
        for part in match.group("logs").split(".")[1:]:
            name = _LOG_NAMES.get(part[0])
            if name is not None:
                logs[name] = int(part[1:])
        return cls(int(match.group("rows")), logs)

    def with_rows(self, rows: int) -> Position:
        return replace(self, rows=rows)

    def with_log(self, name: str, offset: int) -> Position:
        return replace(self, logs={**self.logs, name: offset})


def format_event(name: str, data: object, event_id: str | None = None) -> bytes:
    """Encode one event in the ``text/event-stream`` format (data as one JSON line)."""
    payload = data if isinstance(data, bytes) else orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS)
    head = b"event: " + name.encode() + b"\n"
    if event_id is not None:
        head += b"id: " + event_id.encode() + b"\n"
    return head + b"data: " + payload + b"\n\n"


HEARTBEAT = b": heartbeat\n\n"
