"""Metric rows of a run, in five formats."""

from __future__ import annotations

import pyarrow as pa
from tornado.iostream import StreamClosedError

from ..encoding import FORMATS, JSON_CHUNK_ROWS, encode, iter_json_rows
from ..errors import ApiError
from ..store.query import RowQuery
from .base import ApiHandler, content_disposition
from .routes import METRICS, SYSTEM


class MetricsHandler(ApiHandler):
    """``GET …/runs/:run/metrics``: rows selected by step range, columns and max_points."""

    kind = "vectors"

    async def get(self, experiment: str, run: str) -> None:
        query = self._row_query()
        fmt = self.get_query_argument("format", "json")
        if fmt not in FORMATS:
            raise ApiError(400, "query parameter 'format' must be one of %s, got %r"
                           % (", ".join(FORMATS), fmt))

        body = await self.call_store(self._read_and_encode, experiment, run, query, fmt)

        self.set_header("Content-Type", FORMATS[fmt])
        if fmt in ("parquet", "csv"):
            filename = "%s-%s.%s" % (run, self.kind, fmt)
            self.set_header("Content-Disposition", content_disposition(filename))
        if isinstance(body, bytes):
            self.finish(body)
            return
        # Rows too many to keep as one body are encoded and sent a chunk at a
        # time, so the next chunk is encoded while the client reads this one.
        pieces = iter_json_rows(body, JSON_CHUNK_ROWS)
        try:
            while (piece := await self.call_store(next, pieces, None)) is not None:
                self.write(piece)
                await self.flush()
        except StreamClosedError:
            return  # The client went away; the rest is not encoded.
        self.finish()

    def _row_query(self) -> RowQuery:
        columns = self.list_argument("columns")
        return RowQuery(
            since_step=self.int_argument("since_step"),
            until_step=self.int_argument("until_step"),
            columns=tuple(columns) if columns is not None else None,
            max_points=self.int_argument("max_points", 0, minimum=0) or 0,
        )

    def _read_and_encode(self, experiment: str, run: str, query: RowQuery, fmt: str) -> bytes | pa.Table:
        """Return the encoded rows, from the cache while the run's files are unchanged.

        JSON rows of more than :data:`JSON_CHUNK_ROWS` rows are returned as the
        selected table instead, for :meth:`get` to send in chunks.
        """
        table, version = self.store.metrics_version(experiment, run, self.kind)
        key = (experiment, run, self.kind, version, query, fmt)
        body = self.context.body_cache.get(key)
        if body is None:
            rows = query.apply(table)
            if fmt == "json" and rows.num_rows > JSON_CHUNK_ROWS:
                return rows
            body = encode(rows, fmt)
            self.context.body_cache.put(key, body)
        return body


class SystemMetricsHandler(MetricsHandler):
    """``GET …/runs/:run/system``: system metrics, with the parameters of the metrics route."""

    kind = "system"


default_handlers = [(METRICS, MetricsHandler), (SYSTEM, SystemMetricsHandler)]
