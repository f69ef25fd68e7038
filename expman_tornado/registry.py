"""The handler registry: route groups, by name, turned into one route list.

The built-in groups and any extra ones go through the same path. An extra
group is named by an import string (``"package.module:routes"``) or published
under the entry point group ``expman_tornado.handlers``. Either names a list of
``(pattern, handler_class[, kwargs])`` routes, or a callable that returns one.
Patterns are relative to the base URL (``r"/api/hello"``).
"""

from __future__ import annotations

import importlib
import logging
import re
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Iterable

from tornado.web import RequestHandler

from .handlers.base import ApiNotFoundHandler
from .handlers.routes import API_FALLBACK
from .handlers.urls import url_path_join

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "expman_tornado.handlers"

#: Built-in groups, in the order their routes are tried. ``compat`` comes before
#: ``artifacts``, so that ``…/artifacts/content?path=`` reaches it and not the
#: artifact route. ``frontend`` comes last because its page route matches every
#: path outside ``/api``.
BUILTIN_GROUPS: dict[str, str] = {
    "core": "expman_tornado.handlers.core:default_handlers",
    "compat": "expman_tornado.handlers.compat:default_handlers",
    "artifacts": "expman_tornado.handlers.artifacts:default_handlers",
    "live": "expman_tornado.handlers.live:default_handlers",
    "jupyter": "expman_tornado.handlers.jupyter:default_handlers",
    "frontend": "expman_tornado.handlers.frontend:default_handlers",
}

Route = tuple


class RegistryError(ValueError):
    """A handler group that cannot be loaded or is not a list of routes."""


def load_object(spec: str, group: str | None = None) -> Any:
    """Import ``"package.module:attribute"`` (or ``package.module.attribute``).

    ``group`` names the handler group in error messages and defaults to ``spec``.
    """
    group = spec if group is None else group
    module_name, _, attribute = spec.partition(":")
    if not attribute:
        module_name, _, attribute = spec.rpartition(".")
    if not module_name or not attribute:
        raise RegistryError("handler group %r: %r is not an import string like "
                            "'package.module:routes'" % (group, spec))
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # Third-party code can raise any exception on import.
        raise RegistryError("handler group %r: importing module %r failed: %s: %s"
                            % (group, module_name, type(exc).__name__, exc)) from exc
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise RegistryError("handler group %r: module %r has no attribute %r"
                            % (group, module_name, attribute)) from None


def resolve_routes(source: Any, name: str) -> list[Route]:
    """Return the routes of a group given as a list or a callable returning one.

    Raise :class:`RegistryError`, naming the group, when the callable fails or
    the result is not a list of ``(pattern, handler_class[, kwargs])`` tuples.
    """
    if callable(source):
        try:
            source = source()
        except Exception as exc:  # Third-party code, as in load_object.
            raise RegistryError("handler group %r: calling %r failed: %s: %s"
                                % (name, source, type(exc).__name__, exc)) from exc
    if not isinstance(source, (list, tuple)):
        raise RegistryError("handler group %r is a %s, not a list of routes"
                            % (name, type(source).__name__))
    for route in source:
        _check_route(route, name)
    return list(source)


def _check_route(route: Any, name: str) -> None:
    if not (isinstance(route, tuple) and 2 <= len(route) <= 3 and isinstance(route[0], str)):
        raise RegistryError("handler group %r has a malformed route %r. Each route is a tuple "
                            "(pattern, handler_class[, kwargs])." % (name, route))
    handler = route[1]
    if not (isinstance(handler, type) and issubclass(handler, RequestHandler)):
        raise RegistryError("handler group %r: the handler of route %r is %r, not a subclass of "
                            "tornado.web.RequestHandler" % (name, route[0], handler))
    if len(route) == 3 and not isinstance(route[2], dict):
        raise RegistryError("handler group %r: the kwargs of route %r are a %s, not a dict"
                            % (name, route[0], type(route[2]).__name__))


class HandlerRegistry:
    """Named route groups; :meth:`routes` joins the enabled ones under a base URL."""

    def __init__(self) -> None:
        self._groups: dict[str, Any] = {}

    def add(self, name: str, source: Any) -> None:
        """Register a group from a route list, a callable, an import string or an entry point.

        The source is loaded and checked only by :meth:`routes`. A name that is
        already registered raises :class:`RegistryError`, so that an extra group
        cannot replace a built-in one by accident.
        """
        if name in self._groups:
            raise RegistryError("handler group %r is registered twice. Give each group its own "
                                "name." % name)
        self._groups[name] = source

    @property
    def names(self) -> list[str]:
        return list(self._groups)

    def add_entry_points(self) -> None:
        """Register the groups published under the ``expman_tornado.handlers`` entry points."""
        for point in entry_points(group=ENTRY_POINT_GROUP):
            self.add(point.name, point)

    def check(self, disabled: Iterable[str] = ()) -> None:
        """Load every enabled group once, so that a broken one fails before the server starts.

        Raise :class:`RegistryError`, naming the group, for the first group that
        cannot be loaded.
        """
        disabled = set(disabled)
        for name in self._groups:
            if name not in disabled:
                self._load(name)

    def routes(self, base_url: str, disabled: Iterable[str] = ()) -> list[Route]:
        """Return every enabled group's routes under ``base_url``, the API's 404 included.

        Raise :class:`RegistryError` when an enabled group cannot be loaded.
        """
        disabled = set(disabled)
        unknown = disabled - set(self._groups)
        if unknown:
            log.warning("Unknown handler groups cannot be disabled: %s (known: %s)",
                        ", ".join(sorted(unknown)), ", ".join(self._groups))
        routes: list[Route] = []
        for name in self._groups:
            if name in disabled:
                log.info("Handler group %r is disabled", name)
            elif name != "frontend":
                routes.extend(_prefixed(base_url, route) for route in self._load(name))

        # Unknown /api paths get a JSON 404 before the dashboard's page route,
        # which matches every other path, can answer them with HTML.
        routes.append(_prefixed(base_url, (API_FALLBACK, ApiNotFoundHandler)))
        if "frontend" in self._groups and "frontend" not in disabled:
            routes.extend(_prefixed(base_url, route) for route in self._load("frontend"))
        return routes

    def _load(self, name: str) -> list[Route]:
        source = self._groups[name]
        if isinstance(source, str):
            source = load_object(source, name)
        elif isinstance(source, EntryPoint):
            source = _load_entry_point(source)
        return resolve_routes(source, name)


def _load_entry_point(point: EntryPoint) -> Any:
    try:
        return point.load()
    except Exception as exc:  # Third-party code, as in load_object.
        raise RegistryError("handler group %r (entry point %r in group %r): loading it failed: "
                            "%s: %s" % (point.name, point.value, ENTRY_POINT_GROUP,
                                        type(exc).__name__, exc)) from exc


def _prefixed(base_url: str, route: Route) -> Route:
    # The base URL is literal text; the route after it is a regular expression.
    pattern = url_path_join(re.escape(base_url), route[0].lstrip("/"))
    if route[0].endswith("/") and not pattern.endswith("/"):
        pattern += "/"
    return (pattern,) + tuple(route[1:])


def default_registry(extra: Iterable[str] = (), use_entry_points: bool = True) -> HandlerRegistry:
    """Return a registry with the built-in groups, entry points and ``extra`` import strings."""
    registry = HandlerRegistry()
    for name, spec in BUILTIN_GROUPS.items():
        registry.add(name, spec)
    if use_entry_points:
        registry.add_entry_points()
    for spec in extra:
        registry.add(spec, spec)
    return registry
