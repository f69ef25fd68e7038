"""The Jupyter Server extension: the same handler groups and traits, mounted at ``/expman``."""

from __future__ import annotations

import os

from jupyter_server.extension.application import ExtensionApp
from tornado.ioloop import IOLoop
from tornado.web import RedirectHandler
from traitlets import Instance

from ..app import ExpmanTornado
from ..handlers.urls import url_path_join
from .auth import with_jupyter_auth
from .servers import HostJupyterServer

#: Where the extension is mounted, under the Jupyter server's base URL.
MOUNT = "expman"


class ExpmanExtension(ExtensionApp):
    """Serve the expman store inside a running Jupyter Server, under its auth.

    Options come from the same ``ExpmanTornado`` traits as the standalone
    server (``c.ExpmanTornado.store = …`` in a Jupyter Server config file or in
    ``expman_tornado_config.py``). The store defaults to ``experiments/`` under
    the server's root_dir.
    """

    name = "expman_tornado"
    extension_url = "/%s/" % MOUNT
    load_other_extensions = True

    options = Instance(ExpmanTornado, allow_none=True)

    def _config_file_name_default(self) -> str:
        return "expman_tornado_config"

    def initialize_settings(self) -> None:
        self.options = ExpmanTornado(parent=self)
        store = self.options.store or os.path.join(self.serverapp.root_dir, "experiments")
        if not os.path.isdir(store):
            self.log.warning("The expman store %s does not exist yet; it is served once created", store)
        base_url = url_path_join(self.serverapp.base_url, MOUNT + "/")
        self.context = self.options.make_context(mode="extension", base_url=base_url, store=store)
        self.context.extra["notebooks"] = HostJupyterServer(self.serverapp)
        self.settings["expman"] = self.context

        self.hub = None
        if "live" not in self.options.disabled_handler_groups:
            self.hub = self.options.make_hub(self.context)
            IOLoop.current().add_callback(self.hub.start)
        self.log.info("expman store %s served at %s", self.context.store.root, base_url)

    def initialize_handlers(self) -> None:
        registry = self.options.make_registry()
        for route in registry.routes("/%s/" % MOUNT, self.options.disabled_handler_groups):
            pattern, handler, *kwargs = route
            self.handlers.append((pattern, with_jupyter_auth(handler), *kwargs))
        mount_url = url_path_join(self.serverapp.base_url, MOUNT + "/")
        self.handlers.append(("/%s" % MOUNT, RedirectHandler, {"url": mount_url}))

    async def stop_extension(self) -> None:
        if self.hub is not None:
            self.hub.stop()
        self.context.executor.shutdown(wait=False, cancel_futures=True)
