"""One run's details."""

from __future__ import annotations

from ..store.edits import RUN_EDITS, check_changes
from .base import ApiHandler
from .routes import RUN


class RunHandler(ApiHandler):
    """``GET /api/experiments/:exp/runs/:run``: metadata, config, columns, files."""

    async def get(self, experiment: str, run: str) -> None:
        self.write_json(await self.call_store(self.store.run, experiment, run))

    async def patch(self, experiment: str, run: str) -> None:
        """Change name, description or tags (the folder keeps its name); reply with the details."""
        self.require_writable()
        changes = await self.call_store(check_changes, self.json_body(), RUN_EDITS)
        self.write_json(await self.call_store(self.store.edit_run, experiment, run, changes))


default_handlers = [(RUN, RunHandler)]
