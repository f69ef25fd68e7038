"""The handler registry: built-in groups, extra groups by import string and by entry point."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import EntryPoint

import pytest

from expman_tornado import registry
from expman_tornado.app import ExpmanTornado
from expman_tornado.registry import (
    BUILTIN_GROUPS,
    ENTRY_POINT_GROUP,
    RegistryError,
    default_registry,
    load_object,
)

from .conftest import assert_api_error, strict_json

LISTED = "tests.extra_groups.listed:routes"
CALLED = "tests.extra_groups.called:make_routes"
MALFORMED = "tests.extra_groups.malformed:"
REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN = "/api/experiments/vision/runs/baseline"


def published(*points: tuple[str, str]):
    """Return a stand-in for ``importlib.metadata.entry_points`` that publishes ``points``."""
    published_points = [EntryPoint(name, value, ENTRY_POINT_GROUP) for name, value in points]

    def entry_points(*, group: str) -> list[EntryPoint]:
        return published_points if group == ENTRY_POINT_GROUP else []

    return entry_points


@pytest.fixture
def published_group(monkeypatch):
    """Publish the callable group of ``tests.extra_groups.called`` as entry point ``hello-ep``."""
    monkeypatch.setattr(registry, "entry_points", published(("hello-ep", CALLED)))


# Built-in groups


@pytest.mark.parametrize("group", sorted(BUILTIN_GROUPS))
def test_disabled_group_routes_left_out(group):
    group_handlers = {route[1] for route in load_object(BUILTIN_GROUPS[group])}
    served = {route[1] for route in default_registry(use_entry_points=False).routes("/", [group])}
    assert group_handlers
    assert not group_handlers & served


def test_builtin_groups_registered_first():
    names = default_registry([LISTED], use_entry_points=False).names
    assert names[: len(BUILTIN_GROUPS)] == list(BUILTIN_GROUPS)
    assert names[-1] == LISTED


@pytest.mark.gen_test
@pytest.mark.parametrize(
    "server_config, path",
    [
        ({"disabled_handler_groups": ["core"]}, "/api/experiments"),
        ({"disabled_handler_groups": ["core"]}, RUN + "/metrics"),
        ({"disabled_handler_groups": ["core"]}, "/api/stats"),
        ({"disabled_handler_groups": ["artifacts"]}, RUN + "/artifacts"),
        ({"disabled_handler_groups": ["artifacts"]}, RUN + "/artifacts/notes.txt"),
        ({"disabled_handler_groups": ["artifacts"]}, RUN + "/files/run.yaml"),
    ],
)
async def test_disabled_api_group_json_404(http_client, base_url, server_config, path):
    response = await http_client.fetch(base_url + path, raise_error=False)
    assert_api_error(response, 404)


@pytest.mark.gen_test
@pytest.mark.parametrize("server_config", [{"disabled_handler_groups": ["core"]}])
async def test_core_disabled_artifacts_served(http_client, base_url, server_config):
    response = await http_client.fetch(base_url + RUN + "/artifacts/notes.txt")
    assert response.body == b"hello\n"


@pytest.mark.gen_test
@pytest.mark.parametrize("server_config", [{"disabled_handler_groups": ["artifacts"]}])
async def test_artifacts_disabled_core_served(http_client, base_url, server_config):
    response = await http_client.fetch(base_url + "/api/experiments")
    assert [e["id"] for e in strict_json(response.body)] == ["vision"]


@pytest.mark.gen_test
@pytest.mark.parametrize("server_config", [{"disabled_handler_groups": ["frontend"]}])
@pytest.mark.parametrize("path", ["/", "/experiments/vision"])
async def test_frontend_disabled_page_404(http_client, base_url, server_config, path):
    response = await http_client.fetch(base_url + path, raise_error=False)
    assert response.code == 404
    assert b"<title>expman</title>" not in response.body


@pytest.mark.gen_test
@pytest.mark.parametrize("server_config", [{"disabled_handler_groups": ["frontend"]}])
async def test_frontend_disabled_api_still_json(http_client, base_url, server_config):
    response = await http_client.fetch(base_url + "/api/experiments")
    assert [e["id"] for e in strict_json(response.body)] == ["vision"]
    missing = await http_client.fetch(base_url + "/api/nope", raise_error=False)
    assert_api_error(missing, 404)


def test_unknown_disabled_group_warns(caplog):
    with caplog.at_level("WARNING", logger="expman_tornado.registry"):
        default_registry(use_entry_points=False).routes("/", ["no-such-group"])
    assert "no-such-group" in caplog.text


# Extra groups by import string


@pytest.mark.gen_test
@pytest.mark.parametrize("server_config", [{"extra_handlers": [LISTED]}])
async def test_extra_group_list_served(http_client, base_url, server_config):
    hello = await http_client.fetch(base_url + "/api/hello/listed")
    assert strict_json(hello.body) == {"group": "listed"}
    greeting = await http_client.fetch(base_url + "/api/hello/greeting")
    assert strict_json(greeting.body) == {"greeting": "hi"}
    experiments = await http_client.fetch(base_url + "/api/experiments")
    assert experiments.code == 200


@pytest.mark.gen_test
@pytest.mark.parametrize("server_config", [{"extra_handlers": [LISTED]}])
async def test_extra_page_before_dashboard(http_client, base_url, server_config):
    response = await http_client.fetch(base_url + "/hello")
    assert response.body == b"hello from an extra group\n"


@pytest.mark.gen_test
@pytest.mark.parametrize("server_config", [{"extra_handlers": [CALLED]}])
async def test_extra_group_callable_served(http_client, base_url, server_config):
    response = await http_client.fetch(base_url + "/api/hello/called")
    assert strict_json(response.body) == {"group": "called"}


@pytest.mark.gen_test
@pytest.mark.parametrize(
    "server_config", [{"extra_handlers": [LISTED, CALLED], "disabled_handler_groups": [LISTED]}]
)
async def test_extra_group_disabled_by_name(http_client, base_url, server_config):
    disabled = await http_client.fetch(base_url + "/api/hello/listed", raise_error=False)
    assert_api_error(disabled, 404)
    enabled = await http_client.fetch(base_url + "/api/hello/called")
    assert strict_json(enabled.body) == {"group": "called"}


@pytest.mark.gen_test
@pytest.mark.parametrize("server_config", [{"extra_handlers": [LISTED], "base_url": "/expman/"}])
async def test_extra_group_under_base_url(http_client, base_url, server_config):
    response = await http_client.fetch(base_url + "/expman/api/hello/listed")
    assert strict_json(response.body) == {"group": "listed"}
    outside = await http_client.fetch(base_url + "/api/hello/listed", raise_error=False)
    assert outside.code == 404


# Extra groups by entry point


@pytest.mark.gen_test
@pytest.mark.usefixtures("published_group")
async def test_entry_point_group_served(http_client, base_url):
    response = await http_client.fetch(base_url + "/api/hello/called")
    assert strict_json(response.body) == {"group": "called"}


@pytest.mark.gen_test
@pytest.mark.usefixtures("published_group")
@pytest.mark.parametrize("server_config", [{"disabled_handler_groups": ["hello-ep"]}])
async def test_entry_point_group_disabled(http_client, base_url, server_config):
    response = await http_client.fetch(base_url + "/api/hello/called", raise_error=False)
    assert_api_error(response, 404)


def test_entry_point_group_named(published_group):
    assert "hello-ep" in default_registry().names


def test_entry_points_switched_off(published_group):
    assert "hello-ep" not in default_registry(use_entry_points=False).names


def test_entry_point_cannot_replace_builtin(monkeypatch):
    monkeypatch.setattr(registry, "entry_points", published(("core", CALLED)))
    with pytest.raises(RegistryError, match="'core' is registered twice"):
        default_registry()


def test_entry_point_load_failure_names_group(monkeypatch, real_store):
    point = ("broken-ep", "tests.extra_groups.no_such_module:routes")
    monkeypatch.setattr(registry, "entry_points", published(point))
    application = ExpmanTornado(store=real_store)
    with pytest.raises(RegistryError, match="'broken-ep'") as failure:
        application.make_web_app()
    assert "no_such_module" in str(failure.value)


# Malformed extra groups


@pytest.mark.parametrize(
    "spec, mentions",
    [
        (MALFORMED + "not_a_list", "is a dict, not a list of routes"),
        (MALFORMED + "bad_tuple", "malformed route"),
        (MALFORMED + "pattern_not_a_string", "malformed route"),
        (MALFORMED + "handler_not_a_class", "tornado.web.RequestHandler"),
        (MALFORMED + "handler_not_a_request_handler", "tornado.web.RequestHandler"),
        (MALFORMED + "kwargs_not_a_dict", "not a dict"),
        (MALFORMED + "raising_callable", "the plugin is broken"),
        (MALFORMED + "callable_returning_none", "is a NoneType, not a list of routes"),
        (MALFORMED + "no_such_attribute", "has no attribute 'no_such_attribute'"),
        ("tests.extra_groups.no_such_module:routes", "importing module"),
        ("tests.extra_groups.broken:routes", "this module fails on import"),
        ("routes", "is not an import string"),
    ],
)
def test_malformed_group_fails_at_start(real_store, spec, mentions):
    application = ExpmanTornado(store=real_store, extra_handlers=[spec])
    with pytest.raises(RegistryError) as failure:
        application.make_web_app()
    message = str(failure.value)
    assert repr(spec) in message
    assert mentions in message


def test_disabled_malformed_group_not_loaded(real_store):
    spec = MALFORMED + "not_a_list"
    application = ExpmanTornado(
        store=real_store, extra_handlers=[spec], disabled_handler_groups=[spec]
    )
    application.make_web_app()


def test_check_loads_enabled_groups_only():
    spec = MALFORMED + "bad_tuple"
    checked = default_registry([spec], use_entry_points=False)
    with pytest.raises(RegistryError, match="malformed route"):
        checked.check()
    checked.check([spec])


def test_same_extra_group_twice_rejected():
    with pytest.raises(RegistryError, match="registered twice"):
        default_registry([LISTED, LISTED], use_entry_points=False)


def test_malformed_group_exits_cleanly(real_store, tmp_path):
    spec = MALFORMED + "not_a_list"
    env = {**os.environ, "PYTHONPATH": REPOSITORY, "JUPYTER_CONFIG_DIR": str(tmp_path)}
    arguments = [real_store, "--port=0", "--extra-handlers=" + spec]
    command = [sys.executable, "-m", "expman_tornado", *arguments]
    finished = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30
    )
    assert finished.returncode == 2
    assert repr(spec) in finished.stderr
    assert "Traceback" not in finished.stderr


def test_routes_are_tuples_under_base_url():
    routes = default_registry([LISTED], use_entry_points=False).routes("/expman/")
    patterns = [route[0] for route in routes]
    assert all(isinstance(route, tuple) for route in routes)
    assert all(pattern.startswith("/expman/") for pattern in patterns)
    assert "/expman/api/hello/listed" in patterns
