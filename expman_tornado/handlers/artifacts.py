"""Artifacts and other files of a run: the listing and the files themselves."""

from __future__ import annotations

import os
from tornado.web import StaticFileHandler

from ..store.files import identity_of
from ..store.store import guess_mime
from .base import ApiHandler, content_disposition
from .routes import ARTIFACT_FILE, ARTIFACTS, RUN_FILE
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
        real_path = await self.call_store(self.store.file_path, experiment, run, path, self.under)
        # A download keeps the requested name, also when it is a symlink to another file of the run.
        self.download_name = path.rsplit("/", 1)[-1]
        self.root = os.path.dirname(real_path)
        await StaticFileHandler.get(self, os.path.basename(real_path), include_body=include_body)

    async def head(self, experiment: str, run: str, path: str) -> None:  # type: ignore[override]
        await self.get(experiment, run, path, include_body=False)

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
]
