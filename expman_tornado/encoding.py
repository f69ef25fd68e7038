"""Encoding metric tables as JSON rows, columnar JSON, CSV, Arrow IPC and parquet."""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from typing import Hashable, Iterator

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

FORMATS = {
    "json": "application/json; charset=UTF-8",
    "columnar": "application/json; charset=UTF-8",
    "csv": "text/csv; charset=UTF-8",
    "arrow": "application/vnd.apache.arrow.stream",
    "parquet": "application/vnd.apache.parquet",
}

#: Timestamps are written in UTC with microseconds and an explicit ``Z``.
_ISO_FORMAT = "%Y-%m-%dT%H:%M:%S%.6fZ"

#: Rows of the JSON rows format encoded at a time (see :func:`iter_json_rows`).
#: A chunk of eight float metrics is about 20 MB of text, below the 32 MiB cap
#: of glibc's dynamic mmap threshold on 64-bit Linux, so a freed chunk's memory
#: can serve the next one. Chunks of 131,072 rows were slower on a 2-core test machine.
JSON_CHUNK_ROWS = 65536

#: Tables of at most this many rows are encoded in one piece (see :func:`iter_json_rows`).
SMALL_JSON_ROWS = 4096

_NEWLINE, _COMMA, _CLOSING_BRACKET = b"\n,]"


def encode(table: pa.Table, fmt: str) -> bytes:
    """Encode a metric table in one of :data:`FORMATS`."""
    if fmt == "arrow":
        sink = pa.BufferOutputStream()
        with ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        return sink.getvalue().to_pybytes()
    if fmt == "parquet":
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        return buffer.getvalue()

    if fmt == "json":
        return b"".join(iter_json_rows(table))
    frame = _frame(table)
    if fmt == "csv":
        return frame.write_csv().encode("utf-8")
    text = frame.select(pl.all().implode()).write_json()
    return text[1:-1].encode("utf-8")  # The one row of lists, without the enclosing [ ].


def iter_json_rows(table: pa.Table, rows_per_chunk: int = JSON_CHUNK_ROWS) -> Iterator[bytes]:
    """Encode rows as a JSON list of objects, yielding the bytes of ``rows_per_chunk`` rows at a time.

    The pieces joined are the whole list, so a reply can be sent while the rest
    is encoded, and only one chunk's text is held at once. polars writes each
    chunk as NDJSON (about three times faster than its JSON array writer on a
    1,000,000-row table here), and the newline after each object becomes a
    comma, in place. JSON text contains no raw newline inside a string, so every
    newline byte is one of those. A table of at most :data:`SMALL_JSON_ROWS`
    rows is written in one piece by the JSON array writer, because the NDJSON
    writer costs about 0.4 ms more per call.
    """
    if table.num_rows <= SMALL_JSON_ROWS:
        yield _frame(table).write_json().encode("utf-8")
        return
    for start in range(0, table.num_rows, rows_per_chunk):
        buffer = io.BytesIO()
        buffer.write(b"" if start else b"[")
        _frame(table.slice(start, rows_per_chunk)).write_ndjson(buffer)
        with buffer.getbuffer() as view:
            text = np.frombuffer(view, dtype=np.uint8)
            text[text == _NEWLINE] = _COMMA
            if start + rows_per_chunk >= table.num_rows:
                text[-1] = _CLOSING_BRACKET  # The comma after the last object.
            del text
        yield buffer.getvalue()


def _frame(table: pa.Table) -> pl.DataFrame:
    """Return a polars frame whose timestamps are ISO-8601 strings in UTC.

    polars writes NaN and ±Inf as JSON ``null`` and int64 values exactly.
    """
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    temporal = [name for name, dtype in frame.schema.items() if dtype == pl.Datetime or isinstance(dtype, pl.Datetime)]
    if temporal:
        frame = frame.with_columns(
            pl.col(name).dt.convert_time_zone("UTC").dt.strftime(_ISO_FORMAT) for name in temporal
        )
    return frame


def rows_to_json(table: pa.Table) -> bytes:
    """Encode rows as a JSON list of objects (the default metrics format)."""
    return encode(table, "json")


class BodyCache:
    """Encoded replies kept by a key that names the files' version, least recently used out.

    Bodies larger than ``max_body`` are not kept: a full million-row reply is
    cheaper to encode again than to hold.
    """

    def __init__(self, max_bytes: int = 128 << 20, max_body: int = 16 << 20):
        self.max_bytes = max_bytes
        self.max_body = max_body
        self._bodies: OrderedDict[Hashable, bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> bytes | None:
        with self._lock:
            body = self._bodies.get(key)
            if body is not None:
                self._bodies.move_to_end(key)
            return body

    def put(self, key: Hashable, body: bytes) -> None:
        if len(body) > self.max_body:
            return
        with self._lock:
            if key in self._bodies:
                return
            self._bodies[key] = body
            self._size += len(body)
            while self._size > self.max_bytes:
                _, dropped = self._bodies.popitem(last=False)
                self._size -= len(dropped)
