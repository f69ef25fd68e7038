"""Store totals and what this server is."""

from __future__ import annotations

from .base import ApiHandler
from .routes import SERVER, STATS


class StatsHandler(ApiHandler):
    """``GET /api/stats``: experiments, runs, active, stale and storage bytes."""

    async def get(self) -> None:
        self.write_json(await self.call_store(self.store.stats))


class ServerHandler(ApiHandler):
    """``GET /api/server``: version, mode, watcher, read-only, live streaming."""

    def get(self) -> None:
        context = self.context
        self.write_json(
            {
                "version": context.version,
                "mode": context.mode,
                "watcher": context.extra.get("watcher"),
                "read_only": context.read_only,
                "live": context.extra.get("live", False),
                "subscribers": context.extra.get("subscribers", 0),
                "store": context.store.root,
            }
        )


default_handlers = [(STATS, StatsHandler), (SERVER, ServerHandler)]
