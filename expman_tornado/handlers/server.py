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
        hub = context.extra.get("hub")
        self.write_json(
            {
                "version": context.version,
                "mode": context.mode,
                "watcher": hub.watcher_name if hub is not None else None,
                "read_only": context.read_only,
                "live": hub is not None and hub.watcher is not None,
                "subscribers": hub.subscribers if hub is not None else 0,
                # Notebooks open from a local folder, so a store on object storage has none.
                "jupyter": ("notebooks" in context.extra and context.extra.get("jupyter_routes", False)
                            and context.store.fs.is_local),
                "editable": not context.read_only,
                "store": context.store.root,
            }
        )


default_handlers = [(STATS, StatsHandler), (SERVER, ServerHandler)]
