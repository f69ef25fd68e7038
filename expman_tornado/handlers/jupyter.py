"""Notebooks on runs: spawn one, and manage the standalone server's Jupyter child."""

from __future__ import annotations

import os
from typing import Awaitable, TypeVar

from ..errors import ApiError
from ..jupyter.notebook import NOTEBOOK_NAME, build_notebook, write_notebook
from ..jupyter.servers import JupyterUnavailable, NotebookServer
from ..store.names import is_inside
from .base import ApiHandler
from .routes import JUPYTER_SPAWN, JUPYTER_STATUS, JUPYTER_STOP

T = TypeVar("T")

#: Most runs one notebook compares.
MAX_RUNS = 50

#: Folder under the Jupyter root for notebooks of a store that lies outside it.
OUTSIDE_ROOT_FOLDER = "expman-notebooks"


class JupyterHandler(ApiHandler):
    """Base of the Jupyter routes: the notebook server of this mode, or a 501."""

    @property
    def notebooks(self) -> NotebookServer:
        server = self.context.extra.get("notebooks")
        if server is None:
            raise ApiError(501, "notebooks are not available on this server")
        return server

    def json_object(self) -> dict:
        body = self.json_body()
        if not isinstance(body, dict):
            raise ApiError(400, "request body must be a JSON object")
        return body


class SpawnHandler(JupyterHandler):
    """``POST /api/jupyter/spawn``: write ``interactive.ipynb`` for runs and return its URL."""

    async def post(self) -> None:
        self.require_writable()
        if not self.store.fs.is_local:
            raise ApiError(501, "notebooks need a store in a local folder; %s is on object storage" % self.store.root)
        experiment, runs = self._runs_requested(self.json_object())
        folders = {}
        for run in runs:
            folders[run] = await self.call_store(self.store.run_dir, experiment, run)

        # Jupyter is started before anything is written, so a spawn that fails
        # with 501 or 503 leaves no file behind.
        notebooks = self.notebooks
        await self._jupyter_call(notebooks.ensure_running())

        path = self._notebook_path(experiment, folders)
        real_folders = {run: os.path.realpath(folder) for run, folder in folders.items()}
        notebook = await self.call_store(build_notebook, experiment, real_folders)
        result = await self.call_store(write_notebook, path, notebook)
        url = await self._jupyter_call(notebooks.url_for(path))
        self.write_json({
            "url": url,
            "path": path,
            "mode": notebooks.mode,
            "written": result.written,
            "edited": result.edited,
        })

    @staticmethod
    async def _jupyter_call(call: Awaitable[T]) -> T:
        """Await a call of the notebook server; its failures become a 501 or a 503."""
        try:
            return await call
        except JupyterUnavailable as exc:
            raise ApiError(501, str(exc)) from None
        except TimeoutError as exc:
            raise ApiError(503, str(exc), headers={"Retry-After": "5"}) from None

    @staticmethod
    def _runs_requested(body: dict) -> tuple[str, list[str]]:
        experiment = body.get("experiment")
        if not isinstance(experiment, str) or not experiment:
            raise ApiError(400, "field 'experiment' must be a non-empty string")
        if ("run" in body) == ("runs" in body):
            raise ApiError(400, "give exactly one of the fields 'run' and 'runs'")
        if "run" in body:
            if not isinstance(body["run"], str) or not body["run"]:
                raise ApiError(400, "field 'run' must be a non-empty string")
            return experiment, [body["run"]]
        runs = body["runs"]
        if not isinstance(runs, list) or not runs or not all(isinstance(r, str) and r for r in runs):
            raise ApiError(400, "field 'runs' must be a non-empty list of run names")
        if len(runs) > MAX_RUNS:
            raise ApiError(400, "field 'runs' lists %d runs; at most %d" % (len(runs), MAX_RUNS))
        return experiment, list(dict.fromkeys(runs))

    def _notebook_path(self, experiment: str, folders: dict[str, str]) -> str:
        """Return where the notebook goes: beside the data, or under the Jupyter root.

        One run's notebook goes in its folder, several runs' in the experiment's.
        A store outside the Jupyter server's root cannot be opened there, so the
        notebook is written under ``<root>/expman-notebooks/`` instead.
        """
        if len(folders) == 1:
            folder = next(iter(folders.values()))
            parts = [experiment, next(iter(folders))]
        else:
            folder = os.path.dirname(next(iter(folders.values())))
            parts = [experiment]
        root = self.notebooks.root_dir
        if is_inside(folder, root):
            return os.path.join(os.path.realpath(folder), NOTEBOOK_NAME)
        return os.path.join(root, OUTSIDE_ROOT_FOLDER, *parts, NOTEBOOK_NAME)


class StatusHandler(JupyterHandler):
    """``GET /api/jupyter/status``: ``{running, url, pid}`` of the notebook server."""

    def get(self) -> None:
        self.write_json(self.notebooks.status())


class StopHandler(JupyterHandler):
    """``POST /api/jupyter/stop``: stop the standalone server's Jupyter child."""

    async def post(self) -> None:
        if self.notebooks.mode != "standalone":
            raise ApiError(409, "in extension mode the notebooks run in the host Jupyter server, "
                                "which this route does not stop")
        await self.notebooks.stop()
        self.write_json(self.notebooks.status())


default_handlers = [
    (JUPYTER_SPAWN, SpawnHandler),
    (JUPYTER_STATUS, StatusHandler),
    (JUPYTER_STOP, StopHandler),
]
