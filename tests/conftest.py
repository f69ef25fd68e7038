"""Shared fixtures: stores written by the real expman logger, and the server over them."""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor

import pytest

from expman_tornado.app import ExpmanTornado

from .stores import write_real_store


@pytest.fixture(scope="session", autouse=True)
def _cache_in_temporary_folder(tmp_path_factory):
    """Keep the servers' summary index (``cache_dir``) out of the user's cache folder."""
    previous = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if previous is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = previous


@pytest.fixture(scope="session")
def real_store(tmp_path_factory) -> str:
    """A store written by the expman logger: finished, failed and NaN runs, logs, artifacts."""
    root = str(tmp_path_factory.mktemp("real-store"))
    write_real_store(root)
    return root


@pytest.fixture
def store_root(real_store) -> str:
    """The store the ``app`` fixture serves; override it in a test module for another store."""
    return real_store


@pytest.fixture
def server_config() -> dict:
    """Traits set on ``ExpmanTornado`` for the ``app`` fixture; override to change them."""
    return {}


@pytest.fixture
def expman_app(store_root, server_config) -> ExpmanTornado:
    application = ExpmanTornado(store=store_root, **server_config)
    return application


@pytest.fixture
def app(expman_app, io_loop):
    """The Tornado application that pytest-tornado's ``http_client`` talks to, live hub started."""
    context = expman_app.make_context()
    web_app = expman_app.make_web_app(context)
    hub = expman_app.make_hub(context)
    io_loop.run_sync(hub.start)
    web_app.hub = hub
    yield web_app
    hub.stop()
    assert isinstance(context.executor, ThreadPoolExecutor)
    context.executor.shutdown(wait=True)


def assert_api_error(response, status: int, mentions: str | None = None) -> dict:
    """Check that a reply is the API's JSON error body with ``status``; return the error."""
    assert response.code == status, response.body[:300]
    assert response.headers["Content-Type"].startswith("application/json")
    body = json.loads(response.body)
    assert set(body) == {"error"}
    assert body["error"]["status"] == status
    assert isinstance(body["error"]["message"], str)
    assert "Traceback" not in body["error"]["message"]
    if mentions is not None:
        assert mentions in body["error"]["message"]
    return body["error"]


def strict_json(body: bytes):
    """Parse JSON, rejecting NaN and Infinity tokens as browsers do."""

    def reject(token):
        raise ValueError("non-standard JSON token %s" % token)

    return json.loads(body, parse_constant=reject)


@pytest.fixture(autouse=True)
def _no_proxy_env(monkeypatch):
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)
    yield
    os.environ.pop("EXPMAN_TEST", None)
