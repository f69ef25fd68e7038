"""The dashboard: files of ``frontend_dist/`` and the page for every other path."""

from __future__ import annotations

import os

from tornado.web import HTTPError, RequestHandler, StaticFileHandler

from ..paths import frontend_dir
from .auth import TokenAuthMixin

#: The text in ``index.html`` that is replaced by the server's base URL.
BASE_URL_MARKER = "__EXPMAN_BASE_URL__"


#: The page sent instead of the dashboard when the server needs a token.
TOKEN_REQUIRED_PAGE = (
    "<!doctype html><title>Token required</title><p>This expman-tornado server needs a "
    "token. Open the URL it printed at start (it ends with <code>?token=…</code>).</p>"
)


class DashboardFileHandler(TokenAuthMixin, StaticFileHandler):
    """A built file of the dashboard (scripts, styles, images)."""

    def prepare(self) -> None:
        if not self.token_is_valid():
            raise HTTPError(403, "missing or invalid token")

    def initialize(self) -> None:  # type: ignore[override]
        super().initialize(path=self.settings["expman"].extra.get("frontend_dir") or frontend_dir())

    def set_extra_headers(self, path: str) -> None:
        self.set_header("X-Content-Type-Options", "nosniff")


class DashboardPageHandler(TokenAuthMixin, RequestHandler):
    """Any path outside ``/api`` and the built files: the dashboard's page.

    The page learns the base URL from the server, so its links work at ``/``,
    under ``/expman/`` and under a Jupyter server's base URL.
    """

    def get(self, path: str = "") -> None:
        if not self.token_is_valid():
            self.set_status(403)
            self.finish(TOKEN_REQUIRED_PAGE)
            return
        folder = self.settings["expman"].extra.get("frontend_dir") or frontend_dir()
        index = os.path.join(folder, "index.html")
        try:
            with open(index, encoding="utf-8") as f:
                page = f.read()
        except FileNotFoundError:
            self.set_status(500)
            self.finish("The dashboard is not built: %s is missing." % index)
            return
        base_url = self.settings["expman"].base_url
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.set_header("Cache-Control", "no-cache")
        self.xsrf_token  # Sets the _xsrf cookie that mutating API requests send back.
        self.finish(page.replace(BASE_URL_MARKER, base_url))

    def head(self, path: str = "") -> None:
        self.get(path)  # Tornado sends the headers without the body.


default_handlers = [
    (r"/(?P<path>assets/.+|favicon\.ico)", DashboardFileHandler),
    (r"/(?!api(?:/|$))(?P<path>.*)", DashboardPageHandler),
]
