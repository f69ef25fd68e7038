"""Experiments and the runs table."""

from __future__ import annotations

from ..errors import ApiError
from ..store.edits import EXPERIMENT_EDITS, check_changes
from ..store.search import SearchError, parse_query
from .base import ApiHandler
from .routes import EXPERIMENT, EXPERIMENTS, RUNS


class ExperimentsHandler(ApiHandler):
    """``GET /api/experiments``: every experiment, sorted by id."""

    async def get(self) -> None:
        self.write_json(await self.call_store(self.store.experiments))


class ExperimentHandler(ApiHandler):
    """``GET /api/experiments/:exp``: one experiment."""

    async def get(self, experiment: str) -> None:
        self.write_json(await self.call_store(self.store.experiment, experiment))

    async def patch(self, experiment: str) -> None:
        """Change display_name, description or tags; reply with the experiment."""
        self.require_writable()
        changes = await self.call_store(check_changes, self.json_body(), EXPERIMENT_EDITS)
        self.write_json(await self.call_store(self.store.edit_experiment, experiment, changes))


class RunsHandler(ApiHandler):
    """``GET /api/experiments/:exp/runs``: every run matching ``?q=``, newest first."""

    async def get(self, experiment: str) -> None:
        metrics = self.list_argument("metrics")
        try:
            query = parse_query(self.get_query_argument("q", ""))
        except SearchError as exc:
            raise ApiError(400, "query parameter 'q' is invalid: %s" % exc) from None
        body = await self.call_store(self.store.runs_json, experiment, metrics, query)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(body)


default_handlers = [
    (EXPERIMENTS, ExperimentsHandler),
    (EXPERIMENT, ExperimentHandler),
    (RUNS, RunsHandler),
]
