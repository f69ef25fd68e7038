"""One run's details."""

from __future__ import annotations

from .base import ApiHandler
from .routes import RUN


class RunHandler(ApiHandler):
    """``GET /api/experiments/:exp/runs/:run``: metadata, config, columns, files."""

    async def get(self, experiment: str, run: str) -> None:
        self.write_json(await self.call_store(self.store.run, experiment, run))


default_handlers = [(RUN, RunHandler)]
