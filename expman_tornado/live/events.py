"""Server-Sent Events: event names, ids derived from the files, and their wire format."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

import orjson

LOG_FILES = ("run.log", "console.log")

_ID = re.compile(r"^m(?P<rows>\d+)(?P<logs>(?:\.[a-z]\d+)*)$", re.ASCII)
_LOG_KEYS = {"run.log": "r", "console.log": "c"}
_LOG_NAMES = {key: name for name, key in _LOG_KEYS.items()}


@dataclass(frozen=True)
class Position:
    """How far a client has read a run, counted in what the run's files hold.

    The counts are metric rows, bytes of each log file, histogram rows,
    media.jsonl entries and system metric rows, and the rows of the live
    segments that were merged into an earlier row of their step (``merged``).
    They come from the files, not from a counter of one server process, so
    another process serving the same store resumes a stream at the same place.
    """

    rows: int = 0
    logs: dict = field(default_factory=dict)
    histograms: int = 0
    media: int = 0
    system: int = 0
    merged: int = 0

    @property
    def event_id(self) -> str:
        """Return the id sent with an event, e.g. ``m120.r5123.c0`` or ``m120.r5123.c0.h4.i2.s30.u1``.

        The histogram (``h``), media (``i``), system (``s``) and merged (``u``)
        counts are left out while they are 0, so ids of runs without them keep
        their older form.
        """
        parts = ["m%d" % self.rows]
        for name in LOG_FILES:
            parts.append("%s%d" % (_LOG_KEYS[name], self.logs.get(name, 0)))
        if self.histograms:
            parts.append("h%d" % self.histograms)
        if self.media:
            parts.append("i%d" % self.media)
        if self.system:
            parts.append("s%d" % self.system)
        if self.merged:
            parts.append("u%d" % self.merged)
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
        counts = {"h": 0, "i": 0, "s": 0, "u": 0}
        for part in match.group("logs").split(".")[1:]:
            name = _LOG_NAMES.get(part[0])
            if name is not None:
                logs[name] = int(part[1:])
            elif part[0] in counts:
                counts[part[0]] = int(part[1:])
        return cls(int(match.group("rows")), logs, counts["h"], counts["i"], counts["s"], counts["u"])

    def with_rows(self, rows: int, merged: int | None = None) -> Position:
        return replace(self, rows=rows, merged=self.merged if merged is None else merged)

    def with_log(self, name: str, offset: int) -> Position:
        return replace(self, logs={**self.logs, name: offset})

    def with_histograms(self, rows: int) -> Position:
        return replace(self, histograms=rows)

    def with_media(self, entries: int) -> Position:
        return replace(self, media=entries)

    def with_system(self, rows: int) -> Position:
        return replace(self, system=rows)


def format_event(name: str, data: object, event_id: str | None = None) -> bytes:
    """Encode one event in the ``text/event-stream`` format (data as one JSON line)."""
    payload = data if isinstance(data, bytes) else orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS)
    head = b"event: " + name.encode() + b"\n"
    if event_id is not None:
        head += b"id: " + event_id.encode() + b"\n"
    return head + b"data: " + payload + b"\n\n"


def parse_event(chunk: bytes) -> tuple[str, str | None, bytes]:
    """Split one event encoded by :func:`format_event` into its name, id and data."""
    head, _, data = chunk.partition(b"data: ")
    name, event_id = "", None
    for line in head.decode().splitlines():
        field, _, value = line.partition(": ")
        if field == "event":
            name = value
        elif field == "id":
            event_id = value
    return name, event_id, data[:-2] if data.endswith(b"\n\n") else data


HEARTBEAT = b": heartbeat\n\n"
