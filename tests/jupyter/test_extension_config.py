"""How the extension is found, configured and mounted: stores, config files, base URLs, groups."""

from __future__ import annotations

import json
import os
import shutil
import urllib.parse

import pytest
from jupyter_server.utils import url_path_join

import expman_tornado
from expman_tornado.jupyter.extension import ExpmanExtension

from ..conftest import assert_api_error
from .helpers import fetch_anonymous, spawn_body

REPOSITORY = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


async def server_info(jp_fetch) -> dict:
    return json.loads((await jp_fetch("expman", "api", "server")).body)


async def experiment_ids(jp_fetch) -> list[str]:
    return [e["id"] for e in json.loads((await jp_fetch("expman", "api", "experiments")).body)]


def test_extension_points():
    points = expman_tornado._jupyter_server_extension_points()

    assert points == [{"module": "expman_tornado.jupyter.extension", "app": ExpmanExtension}]


def test_config_file_enables_extension():
    path = os.path.join(REPOSITORY, "etc", "jupyter", "jupyter_server_config.d", "expman_tornado.json")

    with open(path) as f:
        assert json.load(f) == {"ServerApp": {"jpserver_extensions": {"expman_tornado": True}}}


class TestDefaultStore:
    """Without ``c.ExpmanTornado.store``, the store is ``experiments/`` under the root_dir."""

    @pytest.fixture
    def expman_config(self, store_root) -> dict:
        return {}

    async def test_experiments_under_root(self, jp_fetch, jp_root_dir):
        info = await server_info(jp_fetch)

        assert info["store"] == os.path.realpath(jp_root_dir / "experiments")
        assert await experiment_ids(jp_fetch) == ["vision"]


class TestMissingDefaultStore:
    """A store folder that does not exist yet is served once the logger creates it."""

    @pytest.fixture
    def expman_config(self) -> dict:
        return {}

    async def test_served_once_created(self, jp_fetch, jp_root_dir, real_store):
        assert await experiment_ids(jp_fetch) == []

        shutil.copytree(real_store, jp_root_dir / "experiments")

        assert await experiment_ids(jp_fetch) == ["vision"]


class TestStoreOnCommandLine:
    """``jupyter server --ExpmanTornado.store=…`` sets the store too."""

    @pytest.fixture
    def expman_config(self) -> dict:
        return {}

    @pytest.fixture
    def jp_argv(self, real_store) -> list[str]:
        return ["--ExpmanTornado.store=%s" % real_store]

    async def test_store_from_argv(self, jp_fetch, real_store):
        assert (await server_info(jp_fetch))["store"] == os.path.realpath(real_store)


class TestConfigFileInJupyterDir:
    """``expman_tornado_config.json`` in the Jupyter config folder sets the traits."""

    @pytest.fixture
    def expman_config(self) -> dict:
        return {}

    @pytest.fixture
    def jp_server_config(self, expman_config, jp_config_dir, real_store) -> dict:
        jp_config_dir.mkdir(parents=True, exist_ok=True)
        (jp_config_dir / "expman_tornado_config.json").write_text(
            json.dumps({"ExpmanTornado": {"store": real_store}}))
        return {"ServerApp": {"jpserver_extensions": {"expman_tornado": True}}}

    async def test_store_from_file(self, jp_fetch, real_store):
        assert (await server_info(jp_fetch))["store"] == os.path.realpath(real_store)


class TestConfigFileInCurrentFolder:
    """``expman_tornado_config.py`` in the current folder sets the traits, as in standalone mode."""

    @pytest.fixture
    def expman_config(self) -> dict:
        return {}

    @pytest.fixture
    def jp_server_config(self, expman_config, tmp_path, real_store, monkeypatch) -> dict:
        cwd = tmp_path / "cwd"
        cwd.mkdir()
        (cwd / "expman_tornado_config.py").write_text("c.ExpmanTornado.store = %r\n" % real_store)
        monkeypatch.chdir(cwd)
        return {"ServerApp": {"jpserver_extensions": {"expman_tornado": True}}}

    async def test_store_from_file(self, jp_fetch, real_store):
        assert (await server_info(jp_fetch))["store"] == os.path.realpath(real_store)


class TestBaseUrl:
    """Under a JupyterHub-style base URL, every route and every link carries the prefix."""

    @pytest.fixture
    def jp_base_url(self) -> str:
        return "/user/alice/"

    async def test_api_under_prefix(self, jp_fetch, http_server_client):
        assert await experiment_ids(jp_fetch) == ["vision"]

        response = await http_server_client.fetch("/expman/api/experiments", raise_error=False,
                                                  follow_redirects=False)
        assert response.code == 404

    async def test_page_base_url(self, jp_fetch):
        page = (await jp_fetch("expman/")).body.decode()

        assert '"/user/alice/expman/"' in page

    async def test_artifact_urls(self, jp_fetch, http_server_client, jp_auth_header):
        response = await jp_fetch("expman", "api", "experiments", "vision", "runs", "baseline",
                                  "artifacts")

        entries = json.loads(response.body)
        for entry in entries:
            assert entry["url"].startswith(
                "/user/alice/expman/api/experiments/vision/runs/baseline/"), entry
            fetched = await http_server_client.fetch(entry["url"], headers=jp_auth_header)
            assert fetched.code == 200

    async def test_mount_redirect(self, http_server_client):
        response = await fetch_anonymous(http_server_client, "/user/alice/", "expman")

        assert response.code in (301, 302)
        assert response.headers["Location"] == "/user/alice/expman/"

    async def test_login_redirect(self, http_server_client):
        response = await fetch_anonymous(http_server_client, "/user/alice/", "expman/")

        location = urllib.parse.urlsplit(response.headers["Location"])
        assert location.path == "/user/alice/login"
        assert urllib.parse.parse_qs(location.query) == {"next": ["/user/alice/expman/"]}

    async def test_spawn_url(self, jp_fetch):
        response = await jp_fetch("expman", "api", "jupyter", "spawn", method="POST",
                                  body=spawn_body(run="baseline"))

        answer = json.loads(response.body)
        assert answer["url"] == (
            "/user/alice/api/contents/experiments/vision/baseline/interactive.ipynb")

    async def test_json_404(self, jp_fetch):
        response = await jp_fetch("expman", "api", "x", raise_error=False)

        assert_api_error(response, 404, "/user/alice/expman/api/x")


class TestLiveDisabled:
    """With the ``live`` group off, the streams are JSON 404s and the rest works."""

    @pytest.fixture
    def expman_config(self, store_root) -> dict:
        return {"store": store_root, "disabled_handler_groups": ["live"]}

    async def test_live_routes_404(self, jp_fetch):
        response = await jp_fetch("expman", "api", "experiments", "vision", "runs", "baseline",
                                  "live", raise_error=False)

        assert_api_error(response, 404)
        info = await server_info(jp_fetch)
        assert info["live"] is False
        assert info["watcher"] is None


class TestAuthenticationRequired:
    """With ``allow_unauthenticated_access`` off, Jupyter itself rejects requests without a user."""

    @pytest.fixture
    def jp_server_config(self, expman_config) -> dict:
        return {
            "ServerApp": {"jpserver_extensions": {"expman_tornado": True},
                          "allow_unauthenticated_access": False},
            "ExpmanTornado": expman_config,
        }

    async def test_api_403_json(self, http_server_client, jp_base_url):
        response = await fetch_anonymous(http_server_client, jp_base_url, "expman/api/experiments")

        error = assert_api_error(response, 403)
        assert "token" in error["message"]

    async def test_page_redirects_to_login(self, http_server_client, jp_base_url):
        response = await fetch_anonymous(http_server_client, jp_base_url, "expman/runs?a=1&b=2")

        assert response.code == 302
        location = urllib.parse.urlsplit(response.headers["Location"])
        assert location.path == url_path_join(jp_base_url, "login")
        assert urllib.parse.parse_qs(location.query) == {
            "next": [url_path_join(jp_base_url, "expman/runs") + "?a=1&b=2"]}

    async def test_api_with_token(self, jp_fetch):
        assert await experiment_ids(jp_fetch) == ["vision"]


class TestStandaloneToken:
    """``c.ExpmanTornado.token`` is for the standalone server: Jupyter's token is enough here."""

    @pytest.fixture
    def expman_config(self, store_root) -> dict:
        return {"store": store_root, "token": "standalone-only"}

    async def test_jupyter_token_enough(self, jp_fetch):
        assert await experiment_ids(jp_fetch) == ["vision"]
        response = await jp_fetch("expman", "api", "jupyter", "spawn", method="POST",
                                  body=spawn_body(run="baseline"))
        assert json.loads(response.body)["mode"] == "extension"
