"""The media a run logged (images, audio, video, figures), from its media.jsonl."""

from __future__ import annotations

from ..store.media import with_url
from .base import ApiHandler
from .routes import MEDIA
from .urls import api_url


class MediaHandler(ApiHandler):
    """``GET …/runs/:run/media?tag=t``: ``[{tag, step, file, url, mime, bytes, logged_at}]``.

    ``tag`` may be repeated, and each value is one tag name. ``url`` is the
    run-file route of ``file``.
    """

    async def get(self, experiment: str, run: str) -> None:
        tags = self.get_query_arguments("tag") or None
        entries = await self.call_store(self.store.media, experiment, run, tags)
        base_url = self.context.base_url
        self.write_json([with_url(entry, api_url(base_url, experiment, run, "files", entry["file"]))
                         for entry in entries])


default_handlers = [(MEDIA, MediaHandler)]
