"""An extra handler group given as a callable that returns its routes."""

from __future__ import annotations

from expman_tornado.handlers.base import ApiHandler


class CalledHandler(ApiHandler):
    """``GET /api/hello/called``: names the group that served it."""

    def get(self) -> None:
        self.write_json({"group": "called"})


def make_routes() -> list[tuple]:
    """Return the group's routes."""
    return [(r"/api/hello/called", CalledHandler)]
