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
from importlib.metadata import entry_points
from typing import Any, Callable, Iterable

from .handlers.base import ApiNotFoundHandler
from .handlers.routes import API_FALLBACK
from .handlers.urls import url_path_join

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "expman_tornado.handlers"

#: Built-in groups, in the order their routes are tried. ``frontend`` comes last
#: because its page route matches every path outside ``/api``.
BUILTIN_GROUPS: dict[str, str] = {
    "core": "expman_tornado.handlers.core:default_handlers",
    "artifacts": "expman_tornado.handlers.artifacts:default_handlers",
    "frontend": "expman_tornado.handlers.frontend:default_handlers",
}

Route = tuple


class RegistryError(ValueError):
    """An extra handler group that cannot be loaded or is not a list of routes."""


def load_object(spec: str) -> Any:
    """Import ``"package.module:attribute"`` (or ``package.module.attribute``)."""
    module_name, _, attribute = spec.partition(":")
    if not attribute:
        module_name, _, attribute = spec.rpartition(".")
    if not module_name or not attribute:
        raise RegistryError("handler group %r is not an import string like 'package.module:routes'" % spec)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise RegistryError("cannot import handler group %r: %s" % (spec, exc)) from exc
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise RegistryError("module %r has no attribute %r" % (module_name, attribute)) from None


def resolve_routes(source: Any, name: str) -> list[Route]:
    """Return the routes of a group given as a list or a callable returning one."""
    routes = source() if callable(source) else source
    if not isinstance(routes, (list, tuple)):
        raise RegistryError("handler group %r is not a list of routes" % name)
    for route in routes:
        if not (isinstance(route, tuple) and 2 <= len(route) <= 3 and isinstance(route[0], str)):
            raise RegistryError("handler group %r has a malformed route %r; expected "
                                "(pattern, handler_class[, kwargs])" % (name, route))
    return list(routes)


class HandlerRegistry:
    """Named route groups; :meth:`routes` joins the enabled ones under a base URL."""

    def __init__(self) -> None:
        self._groups: dict[str, Callable[[], Any] | list | str] = {}

    def add(self, name: str, source: Any) -> None:
        """Register a group from a route list, a callable or an import string."""
        self._groups[name] = source

    @property
    def names(self) -> list[str]:
        return list(self._groups)

    def add_entry_points(self) -> None:
        """Register the groups published under the ``expman_tornado.handlers`` entry points."""
        for point in entry_points(group=ENTRY_POINT_GROUP):
            self.add(point.name, point.value)

    def routes(self, base_url: str, disabled: Iterable[str] = ()) -> list[Route]:
        """Return every enabled group's routes under ``base_url``, the API's 404 included."""
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
            source = load_object(source)
        return resolve_routes(source, name)


def _prefixed(base_url: str, route: Route) -> Route:
    pattern = url_path_join(base_url, route[0].lstrip("/"))
    if route[0].endswith("/") and not pattern.endswith("/"):
        pattern += "/"
    return (pattern,) + tuple(route[1:])


def default_registry(extra: Iterable[str] = (), use_entry_points: bool = True) -> HandlerRegistry:
    """Return a registry with the built-in groups, entry points and ``extra`` import strings."""
    registry = HandlerRegistry()
    for name, spec in BUILTIN_GROUPS.items():
        if name != "frontend":
            registry.add(name, spec)
    if use_entry_points:
        registry.add_entry_points()
    for spec in extra:
        registry.add(spec, spec)
    registry.add("frontend", BUILTIN_GROUPS["frontend"])
    return registry
