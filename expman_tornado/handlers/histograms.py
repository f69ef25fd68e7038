"""Histograms of a run, by tag."""

from __future__ import annotations

from ..store import histograms
from .base import ApiHandler
from .routes import HISTOGRAMS


class HistogramsHandler(ApiHandler):
    """``GET …/runs/:run/histograms?tag=t&max_steps=N``: ``{tag: [{step, edges, counts}]}``.

    ``tag`` may be repeated, and each value is one tag name. ``max_steps``
    keeps at most N histograms per tag, evenly spread (0 or absent: all).
    """

    async def get(self, experiment: str, run: str) -> None:
        tags = self.get_query_arguments("tag") or None
        max_steps = self.int_argument("max_steps", 0, minimum=0) or 0
        body = await self.call_store(self._read_and_encode, experiment, run, tags, max_steps)
        self.finish(body)

    def _read_and_encode(self, experiment: str, run: str, tags: list[str] | None, max_steps: int) -> bytes:
        return histograms.encode(self.store.histograms(experiment, run, tags, max_steps))


default_handlers = [(HISTOGRAMS, HistogramsHandler)]
