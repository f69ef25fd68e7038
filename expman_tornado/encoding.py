"""Encoding metric tables as JSON rows, columnar JSON, CSV, Arrow IPC and parquet."""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from typing import Hashable

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

    frame = _frame(table)
    if fmt == "csv":
        return frame.write_csv().encode("utf-8")
    if fmt == "columnar":
        text = frame.select(pl.all().implode()).write_json()
        return text[1:-1].encode("utf-8")  # The one row of lists, without the enclosing [ ].
    return frame.write_json().encode("utf-8")


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
