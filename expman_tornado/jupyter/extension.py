"""The Jupyter Server extension: the same handler groups and traits, mounted at ``/expman``."""

from __future__ import annotations

import asyncio
import os

from jupyter_server.extension.application import ExtensionApp

try:
    from jupyter_server.auth.decorator import allow_unauthenticated
except ImportError:  # Jupyter Server before 2.13, which checks no decorators.

    def allow_unauthenticated(method):  # type: ignore[no-redef]
        return method

from tornado.ioloop import IOLoop
from tornado.web import RedirectHandler
from traitlets import Instance

from ..app import ExpmanTornado
from ..handlers.urls import url_path_join
from .auth import STARTED_KEY, with_jupyter_auth
from .servers import HostJupyterServer

#: Where the extension is mounted, under the Jupyter server's base URL.
MOUNT = "expman"


class MountRedirectHandler(RedirectHandler):
    """``/expman`` to ``/expman/``, for anyone: adding a slash reveals nothing."""

    get = allow_unauthenticated(RedirectHandler.get)


class ExpmanExtension(ExtensionApp):
    """Serve the expman store inside a running Jupyter Server, under its auth.

    Options come from the same ``ExpmanTornado`` traits as the standalone
    server (``c.ExpmanTornado.store = …`` in a Jupyter Server config file or in
    ``expman_tornado_config.py``, searched in the current folder and in
    Jupyter's config folders). The store defaults to ``experiments/`` under
    the server's root_dir.
    """

    name = "expman_tornado"
    extension_url = "/%s/" % MOUNT
    load_other_extensions = True

    options = Instance(ExpmanTornado, allow_none=True)

    def _config_file_name_default(self) -> str:
        return "expman_tornado_config"

    @property
    def config_file_paths(self) -> list[str]:
        """Return the folders searched for config files: the current folder, then Jupyter's."""
        return [os.getcwd(), *super().config_file_paths]

    def initialize_settings(self) -> None:
        self.options = ExpmanTornado(parent=self)
        store = self.options.store or os.path.join(self.serverapp.root_dir, "experiments")
        if not os.path.isdir(store):
            self.log.warning("The expman store %s does not exist yet; it is served once created", store)
        base_url = url_path_join(self.serverapp.base_url, MOUNT + "/")
        self.context = self.options.make_context(mode="extension", base_url=base_url, store=store)
        self.context.extra["notebooks"] = HostJupyterServer(self.serverapp)
        self.settings["expman"] = self.context

        # Requests wait for this event, so none of them sees a half-started live hub.
        self._started = asyncio.Event()
        self.context.extra[STARTED_KEY] = self._started
        self._hub_task: asyncio.Task | None = None
        self._stopped = False
        self.hub = None
        if "live" in self.options.disabled_handler_groups:
            self._started.set()
            self.options.read_summaries_soon(self.context)
        else:
            self.hub = self.options.make_hub(self.context)
            IOLoop.current().add_callback(self._start_hub)
        self.log.info("expman store %s served at %s", self.context.store.root, base_url)

    async def _start_hub(self) -> None:
        """Start the live hub on the server's IOLoop. If that fails, serve without live updates."""
        if self._stopped or self.hub is None:
            return
        self._hub_task = asyncio.current_task()
        try:
            await self.hub.start()
        except Exception:  # A watcher can fail in many ways, and the REST API works without it.
            self.log.error("Live updates are off: watching %s failed", self.context.store.root,
                           exc_info=True)
            self.hub.stop()
            self.context.extra.pop("hub", None)
        finally:
            self._started.set()
        if not self._stopped:
            self.options.read_summaries_soon(self.context)

    def initialize_handlers(self) -> None:
        registry = self.options.make_registry()
        for route in registry.routes("/%s/" % MOUNT, self.options.disabled_handler_groups):
            pattern, handler, *kwargs = route
            self.handlers.append((pattern, with_jupyter_auth(handler), *kwargs))
        mount_url = url_path_join(self.serverapp.base_url, MOUNT + "/")
        self.handlers.append(("/%s" % MOUNT, MountRedirectHandler, {"url": mount_url}))

    async def stop_extension(self) -> None:
        """Stop the live hub and the reader threads. Calling it again does nothing."""
        if self._stopped:
            return
        self._stopped = True
        if self._hub_task is not None and not self._hub_task.done():
            self._hub_task.cancel()
            try:
                await self._hub_task
            except asyncio.CancelledError:
                pass
        if self.hub is not None:
            self.hub.stop()
        self._started.set()
        # Reads already running are waited for, since they end on their own once
        # summary passes stop. Queued ones are dropped.
        self.context.store.close()
        self.context.executor.shutdown(wait=True, cancel_futures=True)
