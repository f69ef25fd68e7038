"""An extra handler group given as a list of routes."""

from __future__ import annotations

from tornado.web import RequestHandler

from expman_tornado.handlers.base import ApiHandler


class HelloHandler(ApiHandler):
    """``GET /api/hello/listed``: names the group that served it."""

    def get(self) -> None:
        self.write_json({"group": "listed"})


class GreetingHandler(ApiHandler):
    """``GET /api/hello/greeting``: returns the greeting passed as a route kwarg."""

    def initialize(self, greeting: str) -> None:
        self.greeting = greeting

    def get(self) -> None:
        self.write_json({"greeting": self.greeting})


class HelloPageHandler(RequestHandler):
    """``GET /hello``: a page outside ``/api``, which the dashboard route must not take."""

    def get(self) -> None:
        self.set_header("Content-Type", "text/plain; charset=UTF-8")
        self.finish("hello from an extra group\n")


routes = [
    (r"/api/hello/listed", HelloHandler),
    (r"/api/hello/greeting", GreetingHandler, {"greeting": "hi"}),
    (r"/hello", HelloPageHandler),
]
