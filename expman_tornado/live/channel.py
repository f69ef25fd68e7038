"""A run's live channel: one read per change, shared by every client of the run."""

from __future__ import annotations

import asyncio
import logging
import os
from collections import deque
from dataclasses import dataclass, field
from urllib.parse import quote

import pyarrow as pa
import pyarrow.compute as pc

from ..encoding import encode
from ..store import NotFound, Store, UnreadableFile
from ..store.tables import STEP
from .events import LOG_FILES, Position, format_event

log = logging.getLogger(__name__)

#: Events a channel keeps for clients that are a little behind. A client further
#: behind gets one coalesced catch-up instead, so memory stays bounded.
EVENT_BUFFER = 256

#: Most rows sent in one MetricsUpdated event; more go in several events.
MAX_ROWS_PER_EVENT = 50_000

#: Most log bytes read for one update; the rest is read on the next pass.
MAX_LOG_BYTES = 4 << 20


@dataclass(eq=False)
class Subscription:
    """One client's place in a stream; it holds no event data of its own."""

    channel: "RunChannel | StoreChannel"
    next_seq: int = 0
    position: Position = field(default_factory=Position)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    initial: list[bytes] = field(default_factory=list)
    closed: bool = False
    ended: bool = False

    def close(self) -> None:
        """Mark the client gone; its stream loop ends at its next step."""
        self.closed = True
        self.wake.set()


@dataclass
class _Event:
    seq: int
    data: bytes
    position: Position
    final: bool = False


class _Buffered:
    """A bounded buffer of encoded events that subscriptions read by sequence number."""

    def __init__(self) -> None:
        self.events: deque[_Event] = deque(maxlen=EVENT_BUFFER)
        self.next_seq = 0
        self.subscriptions: set[Subscription] = set()

    def publish(self, data: bytes, position: Position, final: bool = False) -> None:
        self.events.append(_Event(self.next_seq, data, position, final))
        self.next_seq += 1
        for subscription in self.subscriptions:
            subscription.wake.set()

    def is_behind(self, subscription: Subscription) -> bool:
        return bool(self.events) and subscription.next_seq < self.events[0].seq

    def take_buffered(self, subscription: Subscription) -> list[bytes]:
        chunks = [e for e in self.events if e.seq >= subscription.next_seq]
        if not chunks:
            return []
        subscription.next_seq = chunks[-1].seq + 1
        subscription.position = chunks[-1].position
        if any(e.final for e in chunks):
            subscription.ended = True
        return [e.data for e in chunks]


class StoreChannel(_Buffered):
    """Store-wide events (experiments and runs created or deleted, status changes)."""

    def subscribe(self) -> Subscription:
        subscription = Subscription(self, next_seq=self.next_seq)
        self.subscriptions.add(subscription)
        return subscription

    async def take(self, subscription: Subscription) -> list[bytes]:
        if self.is_behind(subscription):
            # NOTE: a client this far behind misses the oldest store-wide events;
            # they cannot be rebuilt from the files. It resumes at the oldest kept one.
            subscription.next_seq = self.events[0].seq
        return self.take_buffered(subscription)


class RunChannel(_Buffered):
    """The live state of one run while at least one client streams it.

    Every change is read once, under :attr:`lock`, and published as encoded
    events to all subscriptions. A subscription that fell out of the buffer, or
    resumes from a ``Last-Event-ID``, catches up from the files instead.
    """

    def __init__(self, store: Store, experiment: str, run: str, executor=None, base_url: str = "/"):
        super().__init__()
        self.base_url = base_url
        self.store = store
        self.experiment = experiment
        self.run = run
        self.executor = executor
        self.lock = asyncio.Lock()
        self.position = Position()
        self.deleted = False
        self._log_inodes: dict[str, int] = {}
        self._status: str | None = None
        self._signature: tuple | None = None
        self._artifacts: set[str] | None = None

    @property
    def folder(self) -> str:
        return os.path.join(self.store.root, self.experiment, self.run)

    async def _in_thread(self, function, *args):
        return await asyncio.get_running_loop().run_in_executor(self.executor, function, *args)

    # Start and catch-up

    async def open(self) -> None:
        """Read the run's current end; raise NotFound for an unknown run."""
        async with self.lock:
            await self._in_thread(self._read_start)

    def _read_start(self) -> None:
        details = self.store.run(self.experiment, self.run)
        self.position = Position(details["rows"] or 0, {})
        for name in LOG_FILES:
            offset, inode = _complete_log_size(os.path.join(self.folder, name))
            self.position = self.position.with_log(name, offset)
            if inode is not None:
                self._log_inodes[name] = inode
        self._status = details["status"]
        self._signature = _signature(details)
        self._artifacts = {entry["path"] for entry in self._artifact_entries()}

    async def subscribe(self, resume: Position | None, since_step: int | None) -> Subscription:
        """Add a client: a Snapshot, then what it missed (resume or since_step), then live events."""
        async with self.lock:
            subscription = Subscription(self, next_seq=self.next_seq, position=self.position)
            snapshot = await self._in_thread(self._snapshot)
            subscription.initial.append(format_event("Snapshot", snapshot, self.position.event_id))
            if resume is not None:
                start = Position(min(resume.rows, self.position.rows), resume.logs)
                subscription.initial.extend(await self._in_thread(self._catch_up, start, None))
            elif since_step is not None:
                subscription.initial.extend(await self._in_thread(self._catch_up, None, since_step))
            self.subscriptions.add(subscription)
            return subscription

    async def take(self, subscription: Subscription) -> list[bytes]:
        """Return the encoded events a client has not had yet."""
        if subscription.initial:
            chunks, subscription.initial = subscription.initial, []
            return chunks
        if self.is_behind(subscription):
            async with self.lock:
                chunks = await self._in_thread(self._catch_up, subscription.position, None)
                subscription.next_seq = self.next_seq
                subscription.position = self.position
            return chunks
        return self.take_buffered(subscription)

    def _snapshot(self) -> dict:
        try:
            details = self.store.run(self.experiment, self.run)
        except NotFound:
            return {"status": None, "stale": False, "last_step": None, "columns": []}
        return {
            "status": details["status"],
            "stale": details["stale"],
            "last_step": self._last_step(),
            "columns": details["columns"],
        }

    def _catch_up(self, start: Position | None, since_step: int | None) -> list[bytes]:
        """Encode what lies between ``start`` (or step ``since_step``) and the channel's position."""
        chunks = []
        table = self._table()
        if table is not None:
            table = table.slice(0, self.position.rows)
            if since_step is not None:
                mask = pc.fill_null(pc.greater(table.column(STEP), since_step), False)
                rows = table.filter(mask)
            else:
                rows = table.slice(start.rows if start else self.position.rows)
            chunks.extend(self._metrics_events(rows, self.position))
        if start is not None:
            for name in LOG_FILES:
                begin = start.logs.get(name, 0)
                end = self.position.logs.get(name, 0)
                if begin > end:
                    begin = 0  # The log was truncated or rotated since.
                lines, _ = _read_lines(os.path.join(self.folder, name), begin, end)
                if lines:
                    chunks.append(format_event("LogMessage", {"file": name, "lines": lines},
                                               self.position.event_id))
        return chunks

    # Updates

    async def update(self, changed: set[str]) -> None:
        """Read what changed in the run and publish the resulting events."""
        if self.deleted:
            return
        async with self.lock:
            events = await self._in_thread(self._read_changes, changed)
            for data, position, final in events:
                self.position = position
                self.publish(data, position, final)

    def _read_changes(self, changed: set[str]) -> list[tuple[bytes, Position, bool]]:
        try:
            self.store.run_dir(self.experiment, self.run)
        except NotFound:
            self.deleted = True
            data = format_event("RunDeleted", {"experiment": self.experiment, "run": self.run},
                                self.position.event_id)
            return [(data, self.position, True)]

        events: list[tuple[bytes, Position, bool]] = []
        position = self.position
        table = self._table()
        if table is not None:
            if table.num_rows > position.rows:
                new_rows = table.slice(position.rows)
                position = position.with_rows(table.num_rows)
                events.extend((data, position, False) for data in self._metrics_events(new_rows, position))
            elif table.num_rows < position.rows:
                position = position.with_rows(table.num_rows)  # A rewritten, shorter file.

        for name in LOG_FILES:
            position, data = self._log_update(name, position)
            if data is not None:
                events.append((data, position, False))

        if "run.yaml" in changed or "config.yaml" in changed:
            events.extend((data, position, False) for data in self._metadata_events(position))
        if any(name.startswith("artifacts") for name in changed):
            events.extend((data, position, False) for data in self._artifact_events(position))
        return events

    def _table(self) -> pa.Table | None:
        try:
            return self.store.metrics_table(self.experiment, self.run)
        except (UnreadableFile, NotFound):
            return None

    def _last_step(self) -> int | None:
        table = self._table()
        if table is None or self.position.rows == 0:
            return None
        steps = table.column(STEP).slice(0, self.position.rows).drop_null()
        return pc.max(steps).as_py() if len(steps) else None

    def _metrics_events(self, rows: pa.Table, position: Position) -> list[bytes]:
        events = []
        for start in range(0, rows.num_rows, MAX_ROWS_PER_EVENT):
            part = rows.slice(start, MAX_ROWS_PER_EVENT)
            steps = part.column(STEP).drop_null()
            last_step = pc.max(steps).as_py() if len(steps) else None
            data = b'{"rows":' + encode(part, "json") + b',"last_step":' + _json_int(last_step) + b"}"
            events.append(format_event("MetricsUpdated", data, position.event_id))
        return events

    def _log_update(self, name: str, position: Position) -> tuple[Position, bytes | None]:
        path = os.path.join(self.folder, name)
        try:
            stat = os.stat(path)
        except FileNotFoundError:
            return position, None
        offset = position.logs.get(name, 0)
        if stat.st_ino != self._log_inodes.get(name, stat.st_ino) or stat.st_size < offset:
            offset = 0  # Truncated or rotated: read the new file from its start.
        self._log_inodes[name] = stat.st_ino
        if stat.st_size == offset:
            return position.with_log(name, offset), None
        lines, end = _read_lines(path, offset, min(stat.st_size, offset + MAX_LOG_BYTES))
        position = position.with_log(name, end)
        if not lines:
            return position, None
        return position, format_event("LogMessage", {"file": name, "lines": lines}, position.event_id)

    def _metadata_events(self, position: Position) -> list[bytes]:
        try:
            details = self.store.run(self.experiment, self.run)
        except NotFound:
            return []
        events = []
        if details["status"] != self._status:
            data = {"status": details["status"], "previous": self._status,
                    "finished_at": details["finished_at"]}
            events.append(format_event("StatusChanged", data, position.event_id))
            self._status = details["status"]
        signature = _signature(details)
        if signature != self._signature:
            events.append(format_event("RunUpdated", details, position.event_id))
            self._signature = signature
        return events

    def _artifact_entries(self) -> list[dict]:
        try:
            return [e for e in self.store.artifacts(self.experiment, self.run) if not e["is_default"]]
        except NotFound:
            return []

    def _artifact_events(self, position: Position) -> list[bytes]:
        events = []
        entries = self._artifact_entries()
        known = self._artifacts or set()
        for entry in entries:
            if entry["path"] not in known:
                entry["url"] = self.artifact_url(entry["path"])
                events.append(format_event("ArtifactAdded", entry, position.event_id))
        self._artifacts = {entry["path"] for entry in entries}
        return events

    def artifact_url(self, path: str) -> str:
        segments = ["api/experiments", quote(self.experiment, safe=""), "runs",
                    quote(self.run, safe=""), "artifacts", quote(path, safe="/")]
        return self.base_url.rstrip("/") + "/" + "/".join(segments)


def _signature(details: dict) -> tuple:
    """The fields whose change is sent as RunUpdated (status has its own event)."""
    return (details["name"], details["description"], tuple(details["tags"]), repr(details["config"]))


def _json_int(value: int | None) -> bytes:
    return b"null" if value is None else str(int(value)).encode()


def _complete_log_size(path: str) -> tuple[int, int | None]:
    """Return the offset after the last complete line of a log, and its inode."""
    try:
        with open(path, "rb") as f:
            stat = os.fstat(f.fileno())
            size = stat.st_size
            if size == 0:
                return 0, stat.st_ino
            f.seek(max(0, size - 65536))
            tail = f.read()
            cut = tail.rfind(b"\n")
            if cut < 0:
                # NOTE: a last line longer than the 64 KiB looked at makes a new
                # client's first LogMessage start inside that line.
                return max(0, size - len(tail)), stat.st_ino
            return size - len(tail) + cut + 1, stat.st_ino
    except FileNotFoundError:
        return 0, None


def _read_lines(path: str, start: int, end: int) -> tuple[list[str], int]:
    """Read the complete lines between two offsets; return them and the offset after them."""
    try:
        with open(path, "rb") as f:
            f.seek(start)
            data = f.read(max(0, end - start))
    except FileNotFoundError:
        return [], start
    cut = data.rfind(b"\n")
    if cut < 0:
        return [], start
    text = data[: cut + 1].decode("utf-8", "replace")
    lines = [line[:-1] if line.endswith("\r") else line for line in text.split("\n")[:-1]]
    return lines, start + cut + 1
