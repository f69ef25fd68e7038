"""A run's live channel: one read per change, shared by every client of the run."""

from __future__ import annotations

import asyncio
import logging
import os
from collections import deque
from stat import S_ISREG
from dataclasses import dataclass, field
from urllib.parse import quote

import pyarrow as pa
import pyarrow.compute as pc

from ..encoding import encode
from ..store import NotFound, Store, UnreadableFile
from ..store.media import with_url
from ..store.names import is_link_outside
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
        #: Set when a log had more new bytes than one update reads (MAX_LOG_BYTES).
        self.logs_pending = False

    @property
    def folder(self) -> str:
        return os.path.join(self.store.root, self.experiment, self.run)

    def log_path(self, name: str) -> str | None:
        """Return the path of a log of the run, or None for a symlink that resolves outside the run."""
        path = os.path.join(self.folder, name)
        return None if is_link_outside(path, self.folder) else path

    async def _in_thread(self, function, *args):
        return await asyncio.get_running_loop().run_in_executor(self.executor, function, *args)

    # Start and catch-up

    async def open(self) -> None:
        """Read the run's current end; raise NotFound for an unknown run."""
        async with self.lock:
            await self._in_thread(self._read_start)

    def _read_start(self) -> None:
        details = self.store.run(self.experiment, self.run)
        histograms = self._histogram_table()
        self.position = Position(details["rows"] or 0, {},
                                 histograms=histograms.num_rows if histograms is not None else 0,
                                 media=len(self._media_entries()))
        for name in LOG_FILES:
            offset, inode = _complete_log_size(self.log_path(name))
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
                start = Position(min(resume.rows, self.position.rows), resume.logs,
                                 min(resume.histograms, self.position.histograms),
                                 min(resume.media, self.position.media))
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
                lines, _ = read_log_lines(self.log_path(name), begin, end, to_end=True)
                if lines:
                    chunks.append(format_event("LogMessage", {"file": name, "lines": lines},
                                               self.position.event_id))
        chunks.extend(self._catch_up_histograms(start, since_step))
        chunks.extend(self._catch_up_media(start, since_step))
        return chunks

    def _catch_up_histograms(self, start: Position | None, since_step: int | None) -> list[bytes]:
        """Return one HistogramsUpdated for the histogram rows after ``start`` or step ``since_step``."""
        table = self._histogram_table()
        if table is None:
            return []
        table = table.slice(0, self.position.histograms)
        if since_step is not None:
            rows = table.filter(pc.fill_null(pc.greater(table.column(STEP), since_step), False))
        else:
            rows = table.slice(start.histograms if start else self.position.histograms)
        if rows.num_rows == 0:
            return []
        return [format_event("HistogramsUpdated", _histograms_data(rows), self.position.event_id)]

    def _catch_up_media(self, start: Position | None, since_step: int | None) -> list[bytes]:
        """Return a MediaAdded for each media entry after ``start`` or step ``since_step``.

        These events come last in a catch-up, so each one's id counts the
        entries sent up to it, and a client that leaves halfway resumes there.
        """
        entries = self._media_entries()[: self.position.media]
        first = start.media if start is not None else self.position.media
        chunks = []
        for index, entry in enumerate(entries):
            if since_step is not None:
                if entry["step"] is None or entry["step"] <= since_step:
                    continue
            elif index < first:
                continue
            event_id = self.position.with_media(index + 1).event_id
            chunks.append(format_event("MediaAdded", self._media_event_data(entry), event_id))
        return chunks

    # Updates

    async def update(self, changed: set[str]) -> None:
        """Read what changed in the run and publish the resulting events."""
        if self.deleted:
            return
        async with self.lock:
            events, end = await self._in_thread(self._read_changes, changed)
            for data, position, final in events:
                self.position = position
                self.publish(data, position, final)
            # A file read back shorter moves the position without any event.
            self.position = end

    def _read_changes(self, changed: set[str]) -> tuple[list[tuple[bytes, Position, bool]], Position]:
        """Return the events of a change, each with its position, and the position after them all."""
        try:
            self.store.run_dir(self.experiment, self.run)
        except NotFound:
            self.deleted = True
            data = format_event("RunDeleted", {"experiment": self.experiment, "run": self.run},
                                self.position.event_id)
            return [(data, self.position, True)], self.position

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

        position, data = self._histograms_update(position)
        if data is not None:
            events.append((data, position, False))
        position, media_events = self._media_update(position)
        events.extend(media_events)

        if "run.yaml" in changed or "config.yaml" in changed:
            events.extend((data, position, False) for data in self._metadata_events(position))
        if any(name.startswith("artifacts") for name in changed):
            events.extend((data, position, False) for data in self._artifact_events(position))
        return events, position

    def _table(self) -> pa.Table | None:
        try:
            return self.store.metrics_table(self.experiment, self.run)
        except (UnreadableFile, NotFound):
            return None

    def _histogram_table(self) -> pa.Table | None:
        try:
            return self.store.metrics_table(self.experiment, self.run, "histograms")
        except (UnreadableFile, NotFound):
            return None

    def _histograms_update(self, position: Position) -> tuple[Position, bytes | None]:
        """Return a HistogramsUpdated for the histogram rows added since ``position``, if any."""
        table = self._histogram_table()
        if table is None or table.num_rows == position.histograms:
            return position, None
        if table.num_rows < position.histograms:
            # Read back shorter, as when the writer merges its segments at close.
            return position.with_histograms(table.num_rows), None
        rows = table.slice(position.histograms)
        position = position.with_histograms(table.num_rows)
        return position, format_event("HistogramsUpdated", _histograms_data(rows), position.event_id)

    def _media_entries(self) -> list[dict]:
        try:
            return self.store.media(self.experiment, self.run)
        except NotFound:
            return []

    def _media_update(self, position: Position) -> tuple[Position, list[tuple[bytes, Position, bool]]]:
        """Return a MediaAdded event for each media.jsonl entry added since ``position``."""
        entries = self._media_entries()
        if len(entries) < position.media:
            return position.with_media(len(entries)), []  # A rewritten, shorter media.jsonl.
        events = []
        for index in range(position.media, len(entries)):
            position = position.with_media(index + 1)
            data = format_event("MediaAdded", self._media_event_data(entries[index]), position.event_id)
            events.append((data, position, False))
        return position, events

    def _media_event_data(self, entry: dict) -> dict:
        return with_url(entry, self.run_file_url("files", entry["file"]))

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
        path = self.log_path(name)
        try:
            stat = os.stat(path) if path is not None else None
        except OSError:
            stat = None
        if stat is None or not S_ISREG(stat.st_mode):
            return position, None
        offset = position.logs.get(name, 0)
        if stat.st_ino != self._log_inodes.get(name, stat.st_ino) or stat.st_size < offset:
            offset = 0  # Truncated or rotated: read the new file from its start.
        self._log_inodes[name] = stat.st_ino
        if stat.st_size == offset:
            return position.with_log(name, offset), None
        window_end = min(stat.st_size, offset + MAX_LOG_BYTES)
        lines, end = read_log_lines(path, offset, window_end)
        position = position.with_log(name, end)
        if window_end < stat.st_size:
            self.logs_pending = True  # The hub reads the rest in another pass.
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
        return self.run_file_url("artifacts", path)

    def run_file_url(self, route: str, path: str) -> str:
        """Return the URL of a file of the run under ``route`` (``artifacts`` or ``files``)."""
        segments = ["api/experiments", quote(self.experiment, safe=""), "runs",
                    quote(self.run, safe=""), route, quote(path, safe="/")]
        return self.base_url.rstrip("/") + "/" + "/".join(segments)


def _signature(details: dict) -> tuple:
    """The fields whose change is sent as RunUpdated (status has its own event)."""
    return (details["name"], details["description"], tuple(details["tags"]), repr(details["config"]))


def metrics_rows(data: bytes) -> bytes:
    """Return the JSON list of rows of a MetricsUpdated event's data, without parsing it.

    The data is built by :meth:`RunChannel._metrics_events` as
    ``{"rows":[…],"last_step":N}``, and ``N`` is an integer or ``null``.
    """
    return data[len(b'{"rows":'):data.rindex(b',"last_step":')]


def _histograms_data(rows: pa.Table) -> dict:
    """Return the data of a HistogramsUpdated event: the tags of some rows and their last step."""
    tags: list[str] = []
    if "tag" in rows.column_names:
        tags = sorted({tag for tag in rows.column("tag").to_pylist() if isinstance(tag, str)})
    steps = rows.column(STEP).drop_null()
    return {"tags": tags, "last_step": pc.max(steps).as_py() if len(steps) else None}


def _json_int(value: int | None) -> bytes:
    return b"null" if value is None else str(int(value)).encode()


def _open_regular(path: str | None):
    """Open a regular file for reading; return None for a missing path, a folder, a FIFO or a device.

    O_NONBLOCK keeps a FIFO under a log's name from blocking a reading thread.
    """
    if path is None:
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return None
    if not S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return open(fd, "rb")


def _complete_log_size(path: str | None) -> tuple[int, int | None]:
    """Return the offset after the last complete line of a log, and its inode."""
    f = _open_regular(path)
    if f is None:
        return 0, None
    with f:
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


def read_log_lines(path: str | None, start: int, end: int, to_end: bool = False) -> tuple[list[str], int]:
    """Read the lines between two byte offsets of a log; return them and the offset after them.

    Only complete lines are returned, unless ``to_end`` says that ``end`` is a
    position the stream has already reached: then the bytes after the last line
    end are returned too, as the start of a line. A window of MAX_LOG_BYTES or
    more without any line end is returned as one piece of a longer line, cut
    between two UTF-8 characters, so that a line longer than the window still
    moves the reader on. Invalid UTF-8 is replaced. A path that is None or not a
    readable regular file has no lines.
    """
    f = _open_regular(path)
    if f is None:
        return [], start
    try:
        with f:
            f.seek(start)
            data = f.read(max(0, end - start))
    except OSError as exc:
        log.debug("Cannot read %s: %s", path, exc)
        return [], start
    cut = len(data) if to_end else data.rfind(b"\n") + 1
    if cut == 0 and len(data) >= MAX_LOG_BYTES:
        cut = _utf8_boundary(data)
    if cut == 0:
        return [], start
    text = data[:cut].decode("utf-8", "replace")
    pieces = text.split("\n")
    if pieces[-1] == "":
        pieces.pop()  # The text ends with a line end.
    lines = [line[:-1] if line.endswith("\r") else line for line in pieces]
    return lines, start + cut


def _utf8_boundary(data: bytes) -> int:
    """Return the length of ``data`` without a UTF-8 character cut off at its end."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 == 0x80:
            continue  # A continuation byte: the character starts further back.
        if byte < 0x80:
            return len(data)
        length = 2 if byte >> 5 == 0b110 else 3 if byte >> 4 == 0b1110 else 4 if byte >> 3 == 0b11110 else 1
        return len(data) if back >= length else len(data) - back
    return len(data)
