"""Artifacts and other files of a run: the listings (media included) and the files themselves."""

from __future__ import annotations

import os
from datetime import datetime, timezone

import orjson
from tornado import httputil
from tornado.iostream import StreamClosedError
from tornado.web import StaticFileHandler

from ..errors import ApiError
from ..store.files import Identity, identity_of
from ..store.store import guess_mime
from .base import ApiHandler, content_disposition
from .media import MediaHandler
from .routes import ARTIFACT_FILE, ARTIFACTS, MEDIA, RUN_FILE
from .urls import api_url


class ArtifactsHandler(ApiHandler):
    """``GET …/runs/:run/artifacts``: ``artifacts/**`` and the run's own files."""

    async def get(self, experiment: str, run: str) -> None:
        entries = await self.call_store(self.store.artifacts, experiment, run)
        for entry in entries:
            where = "files" if entry["is_default"] else "artifacts"
            entry["url"] = api_url(self.context.base_url, experiment, run, where, entry["path"])
        self.write_json(entries)


class RunFileHandler(ApiHandler, StaticFileHandler):
    """A file of a run, with ETag, Last-Modified, Range, HEAD and ``?download=1``.

    The path is resolved by the store, which rejects ``..``, absolute paths and
    symlinks that lead outside the run; the file is then served from its folder.
    HTML, SVG and every other file are sent with ``Content-Security-Policy:
    sandbox``, so a page in the run cannot run scripts on this server's origin.
    """

    under = ""

    #: Bytes read per request from object storage while a file is sent.
    object_chunk_bytes = 1 << 20

    #: The object being sent, on object storage (see :meth:`_send_object`).
    object_identity: Identity | None = None

    def initialize(self) -> None:  # type: ignore[override]
        super().initialize(path="")

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.set_header("Cache-Control", "no-cache")

    async def get(self, experiment: str, run: str, path: str, include_body: bool = True) -> None:  # type: ignore[override]
        real_path = await self.call_store(self.resolve_path, experiment, run, path)
        # A download keeps the requested name, also when it is a symlink to another file of the run.
        self.download_name = path.rsplit("/", 1)[-1]
        if not self.store.fs.is_local:
            await self._send_object(real_path, path, include_body)
            return
        self.root = os.path.dirname(real_path)
        try:
            await StaticFileHandler.get(self, os.path.basename(real_path), include_body=include_body)
        except PermissionError:
            raise ApiError(403, "permission denied on %r" % path) from None
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ApiError(404, "file %r not found" % path) from None  # Removed since it was resolved.
        if self.get_status() == 416:
            self._range_error(include_body)

    async def head(self, experiment: str, run: str, path: str) -> None:  # type: ignore[override]
        await self.get(experiment, run, path, include_body=False)

    def _range_error(self, include_body: bool) -> None:
        """Give a 416 the API's JSON error body; StaticFileHandler leaves it an empty text reply."""
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        if include_body:
            message = "range %r is not satisfiable: the file has %d bytes" % (
                self.request.headers.get("Range", ""), self.get_content_size())
            self.write(orjson.dumps({"error": {"status": 416, "message": message}}))

    def resolve_path(self, experiment: str, run: str, path: str) -> str:
        """Return the real path of the requested file; runs in a worker thread.

        Raise the store's errors for a bad, missing or outside path.
        """
        return self.store.file_path(experiment, run, path, self.under)

    async def _send_object(self, real_path: str, path: str, include_body: bool) -> None:
        """Send a file of a store on object storage, with the headers, 304, 416 and Range of a local one.

        The object is stat-ed with one HEAD request and read in ranges of
        :attr:`object_chunk_bytes` on the store's threads, so the IOLoop never
        waits for the network.
        """
        fs = self.store.fs
        identity = await self.call_store(fs.stat_fresh, real_path)
        if identity is None:
            raise ApiError(404, "file %r not found" % path)
        self.object_identity = identity
        self.path = self.absolute_path = real_path
        self.modified = datetime.fromtimestamp(identity.mtime_ns // 1_000_000_000, timezone.utc)
        self.set_headers()
        if self.should_return_304():
            self.set_status(304)
            return
        start, end = 0, identity.size
        header = self.request.headers.get("Range")
        requested = httputil._parse_request_range(header) if header else None
        if requested is not None:
            first, last = requested
            if first is not None and first < 0:
                first = max(0, first + identity.size)
            if (first is not None and (first >= identity.size or (last is not None and first >= last))) or last == 0:
                self.set_status(416)
                self.set_header("Content-Range", "bytes */%d" % identity.size)
                self._range_error(include_body)
                return
            start, end = first or 0, min(identity.size if last is None else last, identity.size)
            if (start, end) != (0, identity.size):
                self.set_status(206)
                self.set_header("Content-Range", httputil._get_content_range(start, end, identity.size))
        self.set_header("Content-Length", end - start)
        while include_body and start < end:
            chunk = await self.call_store(fs.read_bytes, real_path, start, min(self.object_chunk_bytes, end - start))
            if not chunk:
                break  # The object became shorter since the HEAD request.
            start += len(chunk)
            try:
                self.write(chunk)
                await self.flush()
            except StreamClosedError:
                return

    def get_content_size(self) -> int:
        if self.object_identity is not None:
            return self.object_identity.size
        return super().get_content_size()

    def compute_etag(self) -> str | None:
        if self.object_identity is not None:
            return '"%x-%x-%x"' % self.object_identity
        stat = self._stat()
        return '"%x-%x-%x"' % identity_of(stat)

    def get_content_type(self) -> str:
        mime = guess_mime(self.absolute_path)
        if mime.startswith("text/") or mime in ("application/json", "application/yaml"):
            mime += "; charset=UTF-8"
        return mime

    def set_extra_headers(self, path: str) -> None:
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Content-Security-Policy", "sandbox")
        if self.get_query_argument("download", "") not in ("", "0", "false"):
            self.set_header("Content-Disposition", content_disposition(self.download_name))


class ArtifactFileHandler(RunFileHandler):
    """``GET …/runs/:run/artifacts/*path``: a file under the run's ``artifacts/``."""

    under = "artifacts"


default_handlers = [
    (ARTIFACTS, ArtifactsHandler),
    (ARTIFACT_FILE, ArtifactFileHandler),
    (RUN_FILE, RunFileHandler),
    (MEDIA, MediaHandler),
]
