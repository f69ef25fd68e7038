"""Handler groups that the registry must reject, each with a message naming the group."""

from __future__ import annotations

from .called import CalledHandler

not_a_list = {"/api/hello/dict": CalledHandler}

bad_tuple = [(r"/api/hello/short",)]

pattern_not_a_string = [(42, CalledHandler)]

handler_not_a_class = [(r"/api/hello/string", "CalledHandler")]

handler_not_a_request_handler = [(r"/api/hello/object", object)]

kwargs_not_a_dict = [(r"/api/hello/kwargs", CalledHandler, ["greeting"])]


def raising_callable() -> list[tuple]:
    """Fail as a plugin with a bug would."""
    raise RuntimeError("the plugin is broken")


def callable_returning_none() -> None:
    """Return nothing instead of a list of routes."""
