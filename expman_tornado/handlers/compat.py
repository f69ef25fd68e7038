"""Routes of the Rust ``expman-rs`` server (``exp serve``, 1.3.0) that existing scripts call.

They form the handler group ``compat``, which ``--disable=compat`` switches off.
The replies have the Rust server's shapes and this server's errors: an unknown
experiment or run is a JSON 404 here, where the Rust server replies with
made-up values or an empty list.
"""

from __future__ import annotations

import orjson
import pyarrow as pa

from ..encoding import encode
from ..errors import ApiError
from ..live.channel import MAX_LOG_BYTES, MAX_ROWS_PER_EVENT, metrics_rows, read_log_lines
from ..live.events import LOG_FILES, Position, parse_event
from ..store import NotFound, UnreadableFile
from ..store.metadata import EXPERIMENT_FIELDS, RUN_FIELDS
from .artifacts import ArtifactFileHandler
from .base import ApiHandler
from .live import EventStreamHandler
from .routes import (
    ARTIFACT_CONTENT,
    EXPERIMENT_METADATA,
    LOG_STREAM,
    RUN_CONFIG,
    RUN_METADATA,
    VECTORS_STREAM,
)


class ExperimentMetadataHandler(ApiHandler):
    """``GET /api/experiments/:exp/metadata``: the experiment.yaml fields."""

    async def get(self, experiment: str) -> None:
        details = await self.call_store(self.store.experiment, experiment)
        self.write_json({name: details[name] for name in EXPERIMENT_FIELDS})


class RunMetadataHandler(ApiHandler):
    """``GET …/runs/:run/metadata``: ``id`` and the run.yaml fields; 422 when run.yaml cannot be parsed.

    Like the config route, it serves one file, so a file without a good copy is
    an error here, where the run details show it in ``unreadable``.
    """

    async def get(self, experiment: str, run: str) -> None:
        details = await self.call_store(self.store.run, experiment, run)
        reason = details["unreadable"].get("run.yaml")
        if reason is not None:
            raise ApiError(422, "run.yaml cannot be parsed: %s" % reason)
        self.write_json({"id": run, **{name: details[name] for name in RUN_FIELDS}})


class RunConfigHandler(ApiHandler):
    """``GET …/runs/:run/config``: config.yaml as written (``{}`` when there is none, 422 when
    it cannot be parsed and has no good copy, 503 while a RUNNING run rewrites it).

    A nested param stays the string that expman-rs 1.3 writes, such as
    ``"{'name': 'adamw'}"``, as the Rust server sends it. The run details route
    reads such strings back into mappings.
    """

    async def get(self, experiment: str, run: str) -> None:
        self.write_json(await self.call_store(self.store.config_as_written, experiment, run))


class ArtifactContentHandler(ArtifactFileHandler):
    """``GET …/runs/:run/artifacts/content?path=P``: a file of the run, named as the listing names it.

    ``P`` is looked up under ``artifacts/`` first and then in the run folder, so
    both kinds of listing path work, as on the Rust server. The checks are those
    of the artifact route: ``..``, absolute paths, folders and symlinks that
    resolve outside the run are rejected. Without ``path``, the route serves the
    artifact file named ``content``, as the artifact route would.
    """

    by_listing_path = False

    async def get(self, experiment: str, run: str, include_body: bool = True) -> None:  # type: ignore[override]
        path = self.get_query_argument("path", None)
        self.by_listing_path = path is not None
        await super().get(experiment, run, "content" if path is None else path, include_body)

    async def head(self, experiment: str, run: str) -> None:  # type: ignore[override]
        await self.get(experiment, run, include_body=False)

    def resolve_path(self, experiment: str, run: str, path: str) -> str:
        if not self.by_listing_path:
            return super().resolve_path(experiment, run, path)
        try:
            return self.store.file_path(experiment, run, path, "artifacts")
        except NotFound as exc:
            under_artifacts = exc
        try:
            return self.store.file_path(experiment, run, path)
        except NotFound:
            raise under_artifacts from None


def _message(data: bytes | list[bytes], event_id: str) -> bytes:
    """Encode an unnamed event: one ``data:`` field per item of a list."""
    lines = data if isinstance(data, list) else [data]
    return b"id: " + event_id.encode() + b"\n" + b"".join(b"data: " + line + b"\n" for line in lines) + b"\n"


class VectorsStreamHandler(EventStreamHandler):
    """``GET /api/run/:exp/:run/stream/vectors``: unnamed events whose data is a JSON list of rows.

    As on the Rust server, the stream starts with every row of the run and then
    sends the rows written since, in the row format of the metrics route. Each
    event has an id, so a client that reconnects with ``Last-Event-ID`` gets only
    the rows it missed. The stream ends when the run is deleted.
    """

    async def get(self, experiment: str, run: str) -> None:
        resume = Position.parse(self.request.headers.get("Last-Event-ID"))
        subscription = await self.subscribe_run(experiment, run, None, None)
        position = subscription.position
        start = min(resume.rows, position.rows) if resume is not None else 0

        first = await self.call_store(self._rows_before, experiment, run, start, position)

        self.start_stream()
        self.write(first)
        await self.pump(subscription)

    def _rows_before(self, experiment: str, run: str, start: int, position: Position) -> bytes:
        """Encode the rows from ``start`` up to where the subscription starts, in events."""
        try:
            table: pa.Table = self.store.metrics_table(experiment, run)
        except UnreadableFile:
            return b""  # The live events send the rows once the file can be read whole.
        end = min(position.rows, table.num_rows)
        events = []
        for begin in range(start, end, MAX_ROWS_PER_EVENT):
            part = table.slice(begin, min(MAX_ROWS_PER_EVENT, end - begin))
            event_id = position.with_rows(begin + part.num_rows).event_id
            events.append(_message(encode(part, "json"), event_id))
        return b"".join(events)

    def encode_events(self, chunks: list[bytes]) -> bytes:
        out = []
        for chunk in chunks:
            name, event_id, data = parse_event(chunk)
            if name == "MetricsUpdated" and event_id is not None:
                out.append(_message(metrics_rows(data), event_id))
        return b"".join(out)


class LogStreamHandler(EventStreamHandler):
    """``GET …/runs/:run/log/stream?file=run.log``: the log's text, in unnamed events.

    As on the Rust server, the stream starts with the whole file and then sends
    the text appended to it. Each event contains whole lines, one ``data:`` field
    per line and an empty one last, so its data is the text with its final line
    end. A carriage return inside a line becomes a line break, since SSE
    clients split lines there. ``file`` is ``run.log`` (the default) or
    ``console.log``; a file that does not exist yet streams once it is written.
    """

    log_name = LOG_FILES[0]

    async def get(self, experiment: str, run: str) -> None:
        self.log_name = self.get_query_argument("file", LOG_FILES[0])
        if self.log_name not in LOG_FILES:
            raise ApiError(404, "log %r not found; the logs are %s"
                           % (self.log_name, ", ".join(LOG_FILES)))
        resume = Position.parse(self.request.headers.get("Last-Event-ID"))
        subscription = await self.subscribe_run(experiment, run, None, None)

        self.start_stream()
        path = subscription.channel.log_path(self.log_name)
        position = subscription.position
        start = resume.logs.get(self.log_name, 0) if resume is not None else 0
        await self._send_text_before(path, start, position)
        await self.pump(subscription)

    async def _send_text_before(self, path: str | None, start: int, position: Position) -> None:
        """Send the log from ``start`` up to where the subscription starts, a window at a time."""
        end = position.logs.get(self.log_name, 0)
        if start > end:
            start = 0  # The log was truncated or rotated since the client's last event.
        while start < end:
            window_end = min(end, start + MAX_LOG_BYTES)
            lines, next_start = await self.call_store(
                read_log_lines, path, start, window_end, window_end == end, self.store.fs
            )
            if next_start == start:
                break  # The file shrank or cannot be read; the live events take over.
            start = next_start
            self.write(self._log_message(lines, position.with_log(self.log_name, start).event_id))
            await self.flush()

    def _log_message(self, lines: list[str], event_id: str) -> bytes:
        fields = [piece.encode("utf-8") for line in lines for piece in line.split("\r")]
        return _message(fields + [b""], event_id)

    def encode_events(self, chunks: list[bytes]) -> bytes:
        out = []
        for chunk in chunks:
            name, event_id, data = parse_event(chunk)
            if name != "LogMessage" or event_id is None:
                continue
            message = orjson.loads(data)
            if message["file"] == self.log_name and message["lines"]:
                out.append(self._log_message(message["lines"], event_id))
        return b"".join(out)


default_handlers = [
    (EXPERIMENT_METADATA, ExperimentMetadataHandler),
    (RUN_METADATA, RunMetadataHandler),
    (RUN_CONFIG, RunConfigHandler),
    (ARTIFACT_CONTENT, ArtifactContentHandler),
    (LOG_STREAM, LogStreamHandler),
    (VECTORS_STREAM, VectorsStreamHandler),
]
