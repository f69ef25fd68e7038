"""Artifacts and other files of a run: the listings (media included) and the files themselves."""

from __future__ import annotations

import os

import orjson
from tornado.web import StaticFileHandler

from ..errors import ApiError
from ..store.files import identity_of
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

    def initialize(self) -> None:  # type: ignore[override]
        super().initialize(path="")

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.set_header("Cache-Control", "no-cache")

    async def get(self, experiment: str, run: str, path: str, include_body: bool = True) -> None:  # type: ignore[override]
        real_path = await self.call_store(self.resolve_path, experiment, run, path)
        # A download keeps the requested name, also when it is a symlink to another file of the run.
        self.download_name = path.rsplit("/", 1)[-1]
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

    def compute_etag(self) -> str | None:
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
