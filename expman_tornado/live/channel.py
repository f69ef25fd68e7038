"""A run's live channel: one read per change, shared by every client of the run."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
from collections import deque
from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import quote

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from ..encoding import encode
from ..store import NotFound, Store, UnreadableFile
from ..store import tables
from ..store.filesystem import LOCAL, Filesystem
from ..store.media import MEDIA_LOG, with_url
from ..store.names import is_link_outside
from ..store.runtable import Rows
from ..store.tables import STEP
from .events import LOG_FILES, Position, format_event

log = logging.getLogger(__name__)

#: A name in a set of changed paths that stands for every file of the run:
#: events were lost, or the watcher cannot tell which files changed.
ANY_FILE = "*"

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
    #: The loop time of the last bytes sent, and whether a heartbeat is due
    #: (set by :meth:`LiveHub.send_heartbeats`).
    last_sent: float = 0.0
    heartbeat_due: bool = False
    #: Set by the client's stream loop while it waits: writes one event to the
    #: client at once, or returns False when it cannot now (see :meth:`_Buffered.publish`).
    send_now: Callable[[bytes], bool] | None = None

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
        """Add an event, and give it to every subscription.

        A client whose stream loop waits with nothing left to send gets the event
        written at once, so many clients cost no task switch each. Any other
        client (behind, still sending, or at the stream's last event) has its
        loop woken to take the event from the buffer.
        """
        seq = self.next_seq
        self.events.append(_Event(seq, data, position, final))
        self.next_seq += 1
        for subscription in self.subscriptions:
            send_now = subscription.send_now
            if send_now is not None and not final and subscription.next_seq == seq and send_now(data):
                subscription.next_seq = seq + 1
                subscription.position = position
            else:
                subscription.wake.set()

    def is_behind(self, subscription: Subscription) -> bool:
        return bool(self.events) and subscription.next_seq < self.events[0].seq

    def take_buffered(self, subscription: Subscription) -> list[bytes]:
        if not self.events:
            return []
        first = max(0, subscription.next_seq - self.events[0].seq)
        if first >= len(self.events):
            return []
        chunks = list(itertools.islice(self.events, first, None))
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
        self._opened: asyncio.Future = asyncio.get_running_loop().create_future()
        self.position = Position()
        self.deleted = False
        self._log_inodes: dict[str, int] = {}
        self._status: str | None = None
        self._signature: tuple | None = None
        self._artifacts: set[str] | None = None
        self._columns: list[dict] = []
        self._last_step: int | None = None
        # The metric rows as last read, with their generation (see RunTable.generation).
        # NOTE: this keeps one run table alive per open channel, even after the
        # store's cache dropped it.
        self._seen: Rows | None = None
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
        try:
            async with self.lock:
                await self._in_thread(self._read_start)
        except BaseException as exc:
            self._opened.set_exception(exc)
            self._opened.exception()  # Seen here; wait_open raises it again for the others.
            raise
        self._opened.set_result(None)

    async def wait_open(self) -> None:
        """Wait until :meth:`open` is done; raise what it raised."""
        await asyncio.shield(self._opened)

    def _read_start(self) -> None:
        details = self.store.run(self.experiment, self.run)
        rows = self._rows()
        histograms = self._histogram_table()
        system = self._kind_table("system")
        self.position = Position(rows.table.num_rows if rows is not None else details["rows"] or 0, {},
                                 histograms=histograms.num_rows if histograms is not None else 0,
                                 media=len(self._media_entries()),
                                 system=system.num_rows if system is not None else 0,
                                 merged=len(rows.merged_into) if rows is not None else 0)
        for name in LOG_FILES:
            offset, inode = _complete_log_size(self.log_path(name), self.store.fs)
            self.position = self.position.with_log(name, offset)
            if inode is not None:
                self._log_inodes[name] = inode
        self._seen = rows
        self._status = details["status"]
        self._signature = _signature(details)
        self._columns = details["columns"]
        self._last_step = self._read_last_step()
        self._artifacts = {entry["path"] for entry in self._artifact_entries()}

    async def subscribe(self, resume: Position | None, since_step: int | None) -> Subscription:
        """Add a client: a Snapshot, then what it missed (resume or since_step), then live events.

        Only taking the channel's place holds the lock. The Snapshot and the
        catch-up up to that place are read afterwards, so a client that asks for
        a long history does not hold up the updates of the others.
        """
        async with self.lock:
            end = self.position
            subscription = Subscription(self, next_seq=self.next_seq, position=end)
            snapshot = {"status": self._status, "last_step": self._last_step, "columns": self._columns}
            self.subscriptions.add(subscription)
        snapshot["stale"] = await self._in_thread(self._is_stale)
        start = end
        if resume is not None:
            start = Position(min(resume.rows, end.rows), resume.logs,
                             min(resume.histograms, end.histograms), min(resume.media, end.media),
                             min(resume.system, end.system), min(resume.merged, end.merged))
            since_step = None  # Last-Event-ID wins over since_step.
        elif since_step is not None:
            start = await self._in_thread(self._since_position, since_step, end)
        subscription.initial.append(format_event("Snapshot", _snapshot_data(snapshot), start.event_id))
        if start != end or since_step is not None:
            subscription.initial.extend(await self._in_thread(self._catch_up, start, since_step, end))
        return subscription

    async def take(self, subscription: Subscription) -> list[bytes]:
        """Return the encoded events a client has not had yet."""
        if subscription.initial:
            chunks, subscription.initial = subscription.initial, []
            return chunks
        if self.is_behind(subscription):
            async with self.lock:
                start, end = subscription.position, self.position
                subscription.next_seq = self.next_seq
                subscription.position = end
            return await self._in_thread(self._catch_up, start, None, end)
        return self.take_buffered(subscription)

    def _is_stale(self) -> bool:
        try:
            return self.store.run_state(self.experiment, self.run)["stale"]
        except NotFound:
            return False

    def _catch_up(self, start: Position, since_step: int | None, end: Position) -> list[bytes]:
        """Encode what lies between the positions ``start`` and ``end``.

        With ``since_step``, metric rows, histograms and media are chosen by
        step instead (``start`` then comes from :meth:`_since_position`). Each
        event's id is the position once the client has it and the events
        before it, so a client cut off halfway resumes where it was cut off.

        NOTE: merges into rows the client has are known only from the live
        segments. Once the run has closed they are gone, so a client cut off
        before a merge that resumes after the close misses its values.
        """
        chunks = []
        position = start
        read = self._rows()
        if read is not None and (end.rows > position.rows or end.merged > position.merged or since_step is not None):
            table = read.table.slice(0, end.rows)
            if since_step is not None:
                rows = table.filter(pc.fill_null(pc.greater(table.column(STEP), since_step), False))
            else:
                merged = _merged_rows(table, read.merged_into[position.merged:end.merged], position.rows)
                if merged is not None:
                    position = position.with_rows(position.rows, end.merged)
                    chunks.extend(self._merged_events(merged, position))
                rows = table.slice(position.rows)
            position = position.with_rows(end.rows, end.merged)
            if rows.num_rows:
                chunks.extend(self._metrics_events(rows, position))
        for name in LOG_FILES:
            begin = position.logs.get(name, 0)
            stop = end.logs.get(name, 0)
            if begin > stop:
                begin = 0  # The log was truncated or rotated since.
            lines, _ = read_log_lines(self.log_path(name), begin, stop, to_end=True, fs=self.store.fs)
            position = position.with_log(name, stop)
            if lines:
                chunks.append(format_event("LogMessage", {"file": name, "lines": lines}, position.event_id))
        position, data = self._catch_up_histograms(position, since_step, end)
        if data is not None:
            chunks.append(data)
        if end.system > position.system:
            system_end = position.with_system(end.system)
            chunks.extend(self._system_events(position, system_end))
            position = system_end
        chunks.extend(self._catch_up_media(position, since_step, end))
        return chunks

    def _since_position(self, since_step: int, end: Position) -> Position:
        """Return the position of a client that has every row up to step ``since_step``.

        It has the logs up to ``end`` (a stream that starts from a step sends no
        old log lines) and the system rows up to ``end`` (they are counted in
        samples, not steps). Rows, histograms and media entries are counted up
        to the first one after the step.
        """
        position = Position(0, dict(end.logs), 0, 0, end.system, end.merged)
        table = self._table()
        if table is not None:
            position = position.with_rows(_count_up_to(table.slice(0, end.rows), since_step))
        histograms = self._histogram_table()
        if histograms is not None:
            position = position.with_histograms(_count_up_to(histograms.slice(0, end.histograms), since_step))
        entries = self._media_entries()[: end.media]
        first_after = next((index for index, entry in enumerate(entries)
                            if entry["step"] is not None and entry["step"] > since_step), len(entries))
        return position.with_media(first_after)

    def _catch_up_histograms(self, position: Position, since_step: int | None,
                             end: Position) -> tuple[Position, bytes | None]:
        """Return the position after the histogram rows up to ``end``, and one HistogramsUpdated for them."""
        table = self._histogram_table()
        if table is None or (end.histograms <= position.histograms and since_step is None):
            return position, None
        table = table.slice(0, end.histograms)
        if since_step is not None:
            rows = table.filter(pc.fill_null(pc.greater(table.column(STEP), since_step), False))
        else:
            rows = table.slice(position.histograms)
        position = position.with_histograms(end.histograms)
        if rows.num_rows == 0:
            return position, None
        return position, format_event("HistogramsUpdated", _histograms_data(rows), position.event_id)

    def _catch_up_media(self, position: Position, since_step: int | None, end: Position) -> list[bytes]:
        """Return a MediaAdded for each media entry after ``position`` (or step ``since_step``) up to ``end``."""
        entries = self._media_entries()[: end.media]
        chunks = []
        for index in range(position.media, len(entries)):
            entry = entries[index]
            if since_step is not None and (entry["step"] is None or entry["step"] <= since_step):
                continue
            event_id = position.with_media(index + 1).event_id
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
        """Return the events of a change, each with its position, and the position after them all.

        ``changed`` contains the paths, relative to the run folder, that the
        watcher reported, and only the kinds of files among them are read. :data:`ANY_FILE`
        (or the run folder itself, ``""``) means every kind.
        """
        try:
            self.store.run_dir(self.experiment, self.run)
        except NotFound:
            self.deleted = True
            data = format_event("RunDeleted", {"experiment": self.experiment, "run": self.run},
                                self.position.event_id)
            return [(data, self.position, True)], self.position

        kinds = changed_kinds(changed)
        # Without an exact list of names, the tables check every file.
        names = None if ANY_FILE in kinds else changed
        events: list[tuple[bytes, Position, bool]] = []
        position = self.position
        if kinds & {"vectors", ANY_FILE}:
            position = self._metrics_update(position, names, events)
        if kinds & {"logs", ANY_FILE} or self.logs_pending:
            self.logs_pending = False
            for name in LOG_FILES:
                position, data = self._log_update(name, position)
                if data is not None:
                    events.append((data, position, False))
        if kinds & {"histograms", ANY_FILE}:
            position, data = self._histograms_update(position, names)
            if data is not None:
                events.append((data, position, False))
        if kinds & {"system", ANY_FILE}:
            table = self._kind_table("system", names)
            if table is not None and table.num_rows < position.system:
                position = position.with_system(table.num_rows)  # Read back shorter, as at close.
            elif table is not None and table.num_rows > position.system:
                end = position.with_system(table.num_rows)
                events.extend((data, end, False) for data in self._system_events(position, end, table))
                position = end
        if kinds & {"media", ANY_FILE}:
            position, media_events = self._media_update(position)
            events.extend(media_events)
        if kinds & {"metadata", ANY_FILE}:
            events.extend((data, position, False) for data in self._metadata_events(position))
        if kinds & {"artifacts", ANY_FILE}:
            events.extend((data, position, False) for data in self._artifact_events(position))
        return events, position

    def _metrics_update(self, position: Position, names: set[str] | None,
                        events: list[tuple[bytes, Position, bool]]) -> Position:
        """Add the events of the metric rows changed since ``position``, and return the new position.

        Rows already sent that later rows were merged into go in a MetricsMerged
        event, and rows added in a MetricsUpdated event.
        """
        read = self._rows(names)
        if read is None:
            return position
        seen, self._seen = self._seen, read
        table, merged_count = read.table, len(read.merged_into)
        if table.num_rows >= position.rows and merged_count > position.merged:
            merged = _merged_rows(table, read.merged_into[position.merged:], position.rows)
            position = position.with_rows(position.rows, merged_count)
            if merged is not None:
                events.extend((data, position, False) for data in self._merged_events(merged, position))
        elif seen is not None and seen.generation != read.generation and table.num_rows >= position.rows:
            # Rebuilt with no merge noted, as when the segments are merged into the parquet
            # file at close. Rows merged just before that were never noted here, so compare.
            changed = _changed_rows(seen.table, table, min(position.rows, seen.table.num_rows))
            position = position.with_rows(position.rows, merged_count)
            if len(changed):
                events.extend((data, position, False) for data in self._merged_events(table.take(changed), position))
        if table.num_rows > position.rows:
            new_rows = table.slice(position.rows)
            position = position.with_rows(table.num_rows, merged_count)
            last_step = _max_step(new_rows)
            if last_step is not None and (self._last_step is None or last_step > self._last_step):
                self._last_step = last_step
            events.extend((data, position, False) for data in self._metrics_events(new_rows, position))
        elif table.num_rows < position.rows or merged_count < position.merged:
            # A rewritten, shorter file, or the segments merged into the parquet file at close.
            position = position.with_rows(table.num_rows, merged_count)
            self._last_step = _max_step(table)
        if len(self._columns) != table.num_columns:
            self._columns = tables.describe_columns(table)
        return position

    def _table(self, names: set[str] | None = None) -> pa.Table | None:
        rows = self._rows(names)
        return rows.table if rows is not None else None

    def _rows(self, names: set[str] | None = None) -> Rows | None:
        try:
            return self.store.metrics_rows(self.experiment, self.run, changed=names)
        except (UnreadableFile, NotFound):
            return None

    def _histogram_table(self, names: set[str] | None = None) -> pa.Table | None:
        try:
            return self.store.metrics_table(self.experiment, self.run, "histograms", changed=names)
        except (UnreadableFile, NotFound):
            return None

    def _kind_table(self, kind: str, names: set[str] | None = None) -> pa.Table | None:
        try:
            return self.store.metrics_table(self.experiment, self.run, kind, changed=names)
        except (UnreadableFile, NotFound):
            return None

    def _system_events(self, start: Position, end: Position, table: pa.Table | None = None) -> list[bytes]:
        """Return SystemUpdated events for the system metric rows between two positions."""
        table = table if table is not None else self._kind_table("system")
        if table is None or end.system <= start.system:
            return []
        rows = table.slice(start.system, end.system - start.system)
        return self._metrics_events(rows, end, "SystemUpdated")

    def _histograms_update(self, position: Position, names: set[str] | None) -> tuple[Position, bytes | None]:
        """Return a HistogramsUpdated for the histogram rows added since ``position``, if any."""
        table = self._histogram_table(names)
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

    def _read_last_step(self) -> int | None:
        table = self._table()
        if table is None or self.position.rows == 0:
            return None
        return _max_step(table.slice(0, self.position.rows))

    def _merged_events(self, rows: pa.Table, position: Position) -> list[bytes]:
        """Return MetricsMerged events, which send rows a client has again with the values merged into them."""
        events = []
        for start in range(0, rows.num_rows, MAX_ROWS_PER_EVENT):
            part = rows.slice(start, MAX_ROWS_PER_EVENT)
            data = b'{"rows":' + encode(part, "json") + _non_finite_member(part) + b"}"
            events.append(format_event("MetricsMerged", data, position.event_id))
        return events

    def _metrics_events(self, rows: pa.Table, position: Position, name: str = "MetricsUpdated") -> list[bytes]:
        events = []
        for start in range(0, rows.num_rows, MAX_ROWS_PER_EVENT):
            part = rows.slice(start, MAX_ROWS_PER_EVENT)
            last_step = _max_step(part)
            data = (b'{"rows":' + encode(part, "json") + b',"last_step":' + _json_int(last_step)
                    + _non_finite_member(part) + b"}")
            events.append(format_event(name, data, position.event_id))
        return events

    def _log_update(self, name: str, position: Position) -> tuple[Position, bytes | None]:
        path = self.log_path(name)
        ident = self.store.fs.stat(path) if path is not None else None
        if ident is None:
            return position, None
        offset = position.logs.get(name, 0)
        # On object storage every upload of a log is a new object (a new ETag, so a
        # new "inode"): a longer one is taken as the old one with lines appended.
        # NOTE: so a log replaced there by a longer, different one is read from the old offset.
        replaced = self.store.fs.is_local and ident.inode != self._log_inodes.get(name, ident.inode)
        if replaced or ident.size < offset:
            offset = 0  # Truncated or rotated: read the new file from its start.
        self._log_inodes[name] = ident.inode
        if ident.size == offset:
            return position.with_log(name, offset), None
        window_end = min(ident.size, offset + MAX_LOG_BYTES)
        lines, end = read_log_lines(path, offset, window_end, fs=self.store.fs)
        position = position.with_log(name, end)
        if window_end < ident.size:
            self.logs_pending = True  # The hub reads the rest in another pass.
        if not lines:
            return position, None
        return position, format_event("LogMessage", {"file": name, "lines": lines}, position.event_id)

    def _metadata_events(self, position: Position) -> list[bytes]:
        """Return StatusChanged and RunUpdated events for a changed run.yaml or config.yaml.

        The logger rewrites run.yaml at every flush, so the cheap
        :meth:`Store.run_state` decides first; the run's full details are read
        only when a field shown in RunUpdated changed.
        """
        try:
            state = self.store.run_state(self.experiment, self.run)
        except NotFound:
            return []
        events = []
        if state["status"] != self._status:
            data = {"status": state["status"], "previous": self._status,
                    "finished_at": state["finished_at"]}
            events.append(format_event("StatusChanged", data, position.event_id))
            self._status = state["status"]
        if _signature(state) != self._signature:
            try:
                details = self.store.run(self.experiment, self.run)
            except NotFound:
                return events
            events.append(format_event("RunUpdated", details, position.event_id))
            self._signature = _signature(details)
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


def changed_kinds(changed: set[str]) -> set[str]:
    """Return the kinds of files among changed paths of a run folder.

    The kinds are ``vectors``, ``histograms``, ``system``, ``logs``, ``media``,
    ``metadata`` and ``artifacts``; :data:`ANY_FILE` when the run folder itself changed or
    the paths are not known.
    """
    kinds = set()
    for name in changed:
        if name in ("", ANY_FILE):
            return {ANY_FILE}
        if name in LOG_FILES:
            kinds.add("logs")
        elif name in ("run.yaml", "config.yaml"):
            kinds.add("metadata")
        elif name == MEDIA_LOG:
            kinds.add("media")
        elif name == "artifacts" or name.startswith("artifacts/"):
            kinds.add("artifacts")
        else:
            kind = tables.segment_kind(name)
            if kind is None and name.endswith(".parquet"):
                kind = name[: -len(".parquet")]
            if kind == "metrics":
                kind = "vectors"
            if kind in ("vectors", "histograms", "system"):
                kinds.add(kind)
    return kinds


def _count_up_to(table: pa.Table, step: int) -> int:
    """Return how many rows of a table do not have a step after ``step`` (the rows a client has)."""
    after = pc.sum(pc.fill_null(pc.greater(table.column(STEP), step), False)).as_py() or 0
    return table.num_rows - after


def _merged_rows(table: pa.Table, merged_into: np.ndarray, sent: int) -> pa.Table | None:
    """Return the rows among the first ``sent`` of a table that rows were merged into, in table order.

    Return None when all the merges went into rows not sent yet.
    """
    indexes = np.unique(merged_into[merged_into < sent])
    return table.take(indexes) if len(indexes) else None


def _changed_rows(before: pa.Table, after: pa.Table, count: int) -> np.ndarray:
    """Return the indexes of the rows among the first ``count`` whose values differ between two tables."""
    if count == 0:
        return np.empty(0, np.int64)
    changed = pa.array(np.zeros(count, bool))
    for name in set(before.column_names) | set(after.column_names):
        if name not in after.column_names or name not in before.column_names:
            present = (after if name in after.column_names else before).column(name).slice(0, count)
            changed = pc.or_(changed, present.is_valid())
            continue
        old, new = before.column(name).slice(0, count), after.column(name).slice(0, count)
        if old.type != new.type:
            try:
                old = old.cast(new.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                changed = pc.or_(changed, pc.or_(old.is_valid(), new.is_valid()))
                continue
        same = pc.fill_null(pc.equal(old, new), False)
        same = pc.or_(same, pc.and_(old.is_null(), new.is_null()))
        if pa.types.is_floating(new.type):
            same = pc.or_(same, pc.fill_null(pc.and_(pc.is_nan(old), pc.is_nan(new)), False))
        changed = pc.or_(changed, pc.invert(same))
    return np.flatnonzero(changed.to_numpy(zero_copy_only=False))


def _max_step(rows: pa.Table) -> int | None:
    steps = rows.column(STEP).drop_null()
    return pc.max(steps).as_py() if len(steps) else None


def _snapshot_data(snapshot: dict) -> dict:
    return {key: snapshot[key] for key in ("status", "stale", "last_step", "columns")}


def _signature(details: dict) -> tuple:
    """The fields whose change is sent as RunUpdated (status has its own event)."""
    return (details["name"], details["description"], tuple(details["tags"]), repr(details["config"]))


def metrics_rows(data: bytes) -> bytes:
    """Return the JSON list of rows of a MetricsUpdated event's data, without parsing it.

    The data is built by :meth:`RunChannel._metrics_events` as
    ``{"rows":[…],"last_step":N}``, and ``N`` is an integer or ``null``. Rows
    with NaN or ±Inf add a ``non_finite`` member after ``last_step``, and its
    keys are column names, so such data is parsed.
    """
    if b'"non_finite":' in data:
        return orjson.dumps(orjson.loads(data)["rows"])
    return data[len(b'{"rows":'):data.rindex(b',"last_step":')]


def _histograms_data(rows: pa.Table) -> dict:
    """Return the data of a HistogramsUpdated event: the tags of some rows and their last step."""
    tags: list[str] = []
    if "tag" in rows.column_names:
        tags = sorted({tag for tag in rows.column("tag").to_pylist() if isinstance(tag, str)})
    steps = rows.column(STEP).drop_null()
    return {"tags": tags, "last_step": pc.max(steps).as_py() if len(steps) else None}


def _non_finite_member(rows: pa.Table) -> bytes:
    """Return ``,"non_finite":{column: [[row, "NaN"], …]}`` for the NaN and ±Inf values of rows, or nothing.

    JSON rows carry those values as null, so the event names them beside the
    rows: ``"NaN"``, ``"Infinity"`` or ``"-Infinity"``, at the row's index in
    the event. Finding them costs one pass over each float column of the rows.
    """
    found: dict[str, list] = {}
    for name, column in zip(rows.column_names, rows.columns):
        if not pa.types.is_floating(column.type) or column.null_count == len(column):
            continue
        values = column.to_numpy(zero_copy_only=False)  # A null becomes NaN here.
        odd = ~np.isfinite(values)
        if column.null_count:
            odd &= pc.is_valid(column).to_numpy(zero_copy_only=False)
        indices = np.flatnonzero(odd)
        if len(indices):
            found[name] = [[int(i), _non_finite_text(values[i])] for i in indices]
    return b',"non_finite":' + orjson.dumps(found) if found else b""


def _non_finite_text(value: float) -> str:
    if value != value:
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def _json_int(value: int | None) -> bytes:
    return b"null" if value is None else str(int(value)).encode()


def _complete_log_size(path: str | None, fs: Filesystem = LOCAL) -> tuple[int, int | None]:
    """Return the offset after the last complete line of a log, and its inode."""
    ident = fs.stat(path) if path is not None else None
    if ident is None:
        return 0, None
    if ident.size == 0:
        return 0, ident.inode
    start = max(0, ident.size - 65536)
    try:
        tail = fs.read_bytes(path, start, ident.size - start)
    except OSError:
        return 0, None
    cut = tail.rfind(b"\n")
    if cut < 0:
        # NOTE: a last line longer than the 64 KiB looked at makes a new
        # client's first LogMessage start inside that line.
        return start, ident.inode
    return start + cut + 1, ident.inode


def read_log_lines(path: str | None, start: int, end: int, to_end: bool = False,
                   fs: Filesystem = LOCAL) -> tuple[list[str], int]:
    """Read the lines between two byte offsets of a log; return them and the offset after them.

    Only complete lines are returned, unless ``to_end`` says that ``end`` is a
    position the stream has already reached: then the bytes after the last line
    end are returned too, as the start of a line. A window of MAX_LOG_BYTES or
    more without any line end is returned as one piece of a longer line, cut
    between two UTF-8 characters, so that a line longer than the window still
    moves the reader on. Invalid UTF-8 is replaced. A path that is None or not a
    readable regular file has no lines.
    """
    if path is None or fs.stat(path) is None:
        return [], start
    try:
        data = fs.read_bytes(path, start, max(0, end - start))
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
