"""The server extension: API, live streams and dashboard under ``/expman``, behind Jupyter's auth."""

from __future__ import annotations

import json
import os
import urllib.parse

import httpx
import pytest
from httpx_sse import aconnect_sse
from jupyter_server.auth import Authorizer, IdentityProvider, User
from jupyter_server.utils import url_path_join

from expman_tornado.jupyter.auth import JupyterAuthMixin
from expman_tornado.jupyter.extension import MountRedirectHandler

from ..conftest import assert_api_error
from .helpers import fetch_anonymous

#: Seconds a live stream may take to send any one event.
EVENT_TIMEOUT = 10.0

#: Events read from a live stream while waiting for the one a test expects.
MAX_EVENTS = 20

#: API routes that must reject a request without the token, with the method they take.
GUARDED_API_ROUTES = [
    ("GET", "api/experiments"),
    ("GET", "api/experiments/vision"),
    ("GET", "api/experiments/vision/runs"),
    ("GET", "api/experiments/vision/runs/baseline"),
    ("GET", "api/experiments/vision/runs/baseline/metrics"),
    ("GET", "api/experiments/vision/runs/baseline/artifacts"),
    ("GET", "api/experiments/vision/runs/baseline/artifacts/notes.txt"),
    ("GET", "api/experiments/vision/runs/baseline/files/run.yaml"),
    ("HEAD", "api/experiments/vision/runs/baseline/files/run.yaml"),
    ("GET", "api/experiments/vision/runs/baseline/live"),
    ("GET", "api/live"),
    ("GET", "api/stats"),
    ("GET", "api/server"),
    ("GET", "api/jupyter/status"),
    ("POST", "api/jupyter/spawn"),
    ("POST", "api/jupyter/stop"),
    ("GET", "api/no-such-route"),
]


async def test_api_with_token(jp_fetch):
    response = await jp_fetch("expman", "api", "experiments")

    assert response.code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    assert [e["id"] for e in json.loads(response.body)] == ["vision"]


async def test_server_route_mode_extension(jp_fetch, store_root):
    response = await jp_fetch("expman", "api", "server")

    info = json.loads(response.body)
    assert info["mode"] == "extension"
    assert info["store"] == os.path.realpath(store_root)
    assert info["live"] is True


def test_every_route_guarded(jp_serverapp):
    extension = next(iter(jp_serverapp.extension_manager.extension_apps["expman_tornado"]))
    patterns = [pattern for pattern, *_ in extension.handlers]

    unguarded = [pattern for pattern, handler, *_ in extension.handlers
                 if not issubclass(handler, JupyterAuthMixin) and handler is not MountRedirectHandler]

    assert unguarded == []
    assert "/expman/api/experiments" in patterns
    assert "/expman" in patterns


@pytest.mark.parametrize("method, path", GUARDED_API_ROUTES, ids=lambda v: str(v))
async def test_api_without_token_rejected(http_server_client, jp_base_url, method, path):
    body = b"{}" if method == "POST" else None
    response = await fetch_anonymous(http_server_client, jp_base_url, "expman", path,
                                     method=method, body=body)

    if method == "HEAD":
        assert response.code == 403
    else:
        assert_api_error(response, 403)


async def test_api_wrong_token_rejected(jp_fetch):
    response = await jp_fetch("expman", "api", "experiments", raise_error=False,
                              headers={"Authorization": "token wrong"})

    assert_api_error(response, 403)


async def test_token_in_query_accepted(http_server_client, jp_base_url, jp_serverapp):
    token = jp_serverapp.identity_provider.token
    response = await fetch_anonymous(http_server_client, jp_base_url,
                                     "expman/api/experiments?token=" + token)

    assert response.code == 200


async def test_page_without_token_redirects_to_login(http_server_client, jp_base_url):
    response = await fetch_anonymous(http_server_client, jp_base_url, "expman/runs?a=1&b=2")

    assert response.code == 302
    location = urllib.parse.urlsplit(response.headers["Location"])
    assert location.path == url_path_join(jp_base_url, "login")
    # The whole requested URL comes back after login, query included.
    query = urllib.parse.parse_qs(location.query)
    assert query == {"next": [url_path_join(jp_base_url, "expman/runs") + "?a=1&b=2"]}


async def test_page_served_with_base_url(jp_fetch, jp_base_url):
    response = await jp_fetch("expman/")

    assert response.code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    page = response.body.decode()
    assert '"%s"' % url_path_join(jp_base_url, "expman/") in page
    assert "__EXPMAN_BASE_URL__" not in page


async def test_page_route_any_path(jp_fetch):
    response = await jp_fetch("expman", "experiments", "vision")

    assert response.code == 200
    assert response.headers["Content-Type"].startswith("text/html")


async def test_mount_without_slash_redirects(http_server_client, jp_base_url):
    response = await fetch_anonymous(http_server_client, jp_base_url, "expman")

    assert response.code in (301, 302)
    assert response.headers["Location"] == url_path_join(jp_base_url, "expman/")


async def test_unknown_api_route_json_404(jp_fetch):
    response = await jp_fetch("expman", "api", "x", raise_error=False)

    assert_api_error(response, 404, "/expman/api/x")


async def test_unknown_run_json_404(jp_fetch):
    response = await jp_fetch("expman", "api", "experiments", "vision", "runs", "nope",
                              raise_error=False)

    assert_api_error(response, 404, "nope")


async def test_artifact_urls_carry_prefix(jp_fetch, jp_base_url, http_server_client,
                                          jp_auth_header):
    response = await jp_fetch("expman", "api", "experiments", "vision", "runs", "baseline",
                              "artifacts")

    entries = json.loads(response.body)
    assert entries
    prefix = url_path_join(jp_base_url, "expman/api/experiments/vision/runs/baseline/")
    for entry in entries:
        assert entry["url"].startswith(prefix), entry
    notes = next(e for e in entries if e["path"] == "notes.txt")
    response = await http_server_client.fetch(notes["url"], headers=jp_auth_header)
    assert response.body == b"hello\n"


def live_headers(jp_auth_header: dict) -> dict:
    return {**jp_auth_header, "Accept": "text/event-stream"}


async def test_live_stream_with_token(http_server_client, jp_base_url, jp_auth_header):
    url = http_server_client.get_url(
        url_path_join(jp_base_url, "expman/api/experiments/vision/runs/baseline/live"))

    async with httpx.AsyncClient(timeout=EVENT_TIMEOUT) as client:
        async with aconnect_sse(client, "GET", url, headers=live_headers(jp_auth_header)) as source:
            assert source.response.status_code == 200
            assert source.response.headers["content-type"].startswith("text/event-stream")
            events = source.aiter_sse()
            snapshot = await events.__anext__()
            await events.aclose()

    assert snapshot.event == "Snapshot"
    assert json.loads(snapshot.data)["status"] == "FINISHED"


async def test_live_artifact_event_carries_prefix(http_server_client, jp_base_url, jp_auth_header,
                                                  store_root):
    url = http_server_client.get_url(
        url_path_join(jp_base_url, "expman/api/experiments/vision/runs/baseline/live"))

    async with httpx.AsyncClient(timeout=EVENT_TIMEOUT) as client:
        async with aconnect_sse(client, "GET", url, headers=live_headers(jp_auth_header)) as source:
            events = source.aiter_sse()
            assert (await events.__anext__()).event == "Snapshot"
            path = os.path.join(store_root, "vision", "baseline", "artifacts", "late.txt")
            with open(path, "w") as f:
                f.write("late\n")
            for _ in range(MAX_EVENTS):
                event = await events.__anext__()
                if event.event == "ArtifactAdded":
                    break
            await events.aclose()

    added = json.loads(event.data)
    assert added["path"] == "late.txt"
    assert added["url"] == url_path_join(
        jp_base_url, "expman/api/experiments/vision/runs/baseline/artifacts/late.txt")


async def test_live_stream_without_token_rejected(http_server_client, jp_base_url):
    response = await fetch_anonymous(
        http_server_client, jp_base_url, "expman/api/experiments/vision/runs/baseline/live")

    assert_api_error(response, 403)
    assert not response.headers["Content-Type"].startswith("text/event-stream")


class TestDashboardFiles:
    """Built files of the dashboard, from a ``frontend_dir`` made by the test."""

    @pytest.fixture
    def frontend(self, tmp_path) -> str:
        folder = tmp_path / "frontend"
        (folder / "assets").mkdir(parents=True)
        (folder / "index.html").write_text('<script>const BASE = "__EXPMAN_BASE_URL__";</script>')
        (folder / "assets" / "app.js").write_text("console.log('expman');\n")
        return str(folder)

    @pytest.fixture
    def expman_config(self, store_root, frontend) -> dict:
        return {"store": store_root, "frontend_dir": frontend}

    async def test_static_file_with_token(self, jp_fetch):
        response = await jp_fetch("expman", "assets", "app.js")

        assert response.code == 200
        assert response.body == b"console.log('expman');\n"
        assert "javascript" in response.headers["Content-Type"]

    async def test_static_file_without_token(self, http_server_client, jp_base_url):
        response = await fetch_anonymous(http_server_client, jp_base_url, "expman/assets/app.js")

        assert response.code == 302
        assert "/login?next=" in response.headers["Location"]

    async def test_missing_static_file_404(self, jp_fetch):
        response = await jp_fetch("expman", "assets", "nope.js", raise_error=False)

        assert response.code == 404


class DenyWrites(Authorizer):
    """Lets every user read, and no one write; records what it was asked."""

    asked: list = []

    def is_authorized(self, handler, user, action, resource) -> bool:
        self.asked.append((handler.request.method, action, resource))
        return action == "read"


class TestAuthorizer:
    """Jupyter's authorizer decides on the ``expman`` resource: read for GET, write for POST."""

    @pytest.fixture
    def jp_server_config(self, expman_config) -> dict:
        DenyWrites.asked = []
        return {
            "ServerApp": {"jpserver_extensions": {"expman_tornado": True},
                          "authorizer_class": DenyWrites},
            "ExpmanTornado": expman_config,
        }

    async def test_read_allowed(self, jp_fetch):
        response = await jp_fetch("expman", "api", "experiments")

        assert response.code == 200
        assert ("GET", "read", "expman") in DenyWrites.asked

    async def test_write_denied(self, jp_fetch):
        response = await jp_fetch("expman", "api", "jupyter", "spawn", method="POST",
                                  body=json.dumps({"experiment": "vision", "run": "baseline"}),
                                  raise_error=False)

        error = assert_api_error(response, 403)
        assert "write" in error["message"]
        assert ("POST", "write", "expman") in DenyWrites.asked


class HeaderIdentity(IdentityProvider):
    """Trusts an ``X-Test-User`` header, the way a cookie login is trusted: not as a token."""

    def get_user(self, handler):
        name = handler.request.headers.get("X-Test-User")
        return User(name) if name else None


class TestXsrf:
    """A user logged in otherwise than by token needs Jupyter's XSRF check on writes."""

    @pytest.fixture
    def jp_server_config(self, expman_config) -> dict:
        return {
            "ServerApp": {"jpserver_extensions": {"expman_tornado": True},
                          "identity_provider_class": HeaderIdentity},
            "ExpmanTornado": expman_config,
        }

    async def test_write_without_xsrf_rejected(self, http_server_client, jp_base_url, store_root):
        response = await fetch_anonymous(
            http_server_client, jp_base_url, "expman/api/jupyter/spawn", method="POST",
            body=json.dumps({"experiment": "vision", "run": "baseline"}),
            headers={"X-Test-User": "alice"})

        error = assert_api_error(response, 403, "_xsrf")
        assert "Traceback" not in error["message"]
        assert not os.path.exists(os.path.join(store_root, "vision", "baseline",
                                               "interactive.ipynb"))

    async def test_write_with_xsrf_accepted(self, http_server_client, jp_base_url):
        response = await fetch_anonymous(
            http_server_client, jp_base_url, "expman/api/jupyter/spawn", method="POST",
            body=json.dumps({"experiment": "vision", "run": "baseline"}),
            headers={"X-Test-User": "alice", "Cookie": "_xsrf=abcd", "X-XSRFToken": "abcd"})

        assert response.code == 200
        assert json.loads(response.body)["written"] is True

    async def test_read_without_xsrf_accepted(self, http_server_client, jp_base_url):
        response = await fetch_anonymous(http_server_client, jp_base_url, "expman/api/experiments",
                                         headers={"X-Test-User": "alice"})

        assert response.code == 200


def inotify_descriptors() -> int:
    """Return how many inotify file descriptors this process has open."""
    count = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            if "inotify" in os.readlink(os.path.join("/proc/self/fd", name)):
                count += 1
        except OSError:
            continue
    return count


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts descriptors in /proc")
async def test_extension_stops_cleanly(jp_fetch, jp_serverapp):
    context = jp_serverapp.web_app.settings["expman"]
    # A store read starts the reader threads; the hub watches the store since the start.
    await jp_fetch("expman", "api", "experiments", "vision", "runs", "baseline", "metrics")
    threads = list(context.executor._threads)  # CPython's ThreadPoolExecutor keeps its threads here.
    assert threads
    watcher = context.extra["hub"].watcher_name
    descriptors = inotify_descriptors()

    await jp_serverapp.extension_manager.stop_all_extensions()

    assert [thread.name for thread in threads if thread.is_alive()] == []
    if watcher == "inotify":
        assert inotify_descriptors() == descriptors - 1
    assert context.extra["hub"].watcher is None
    # Stopping twice (the server's own cleanup runs after this test) is harmless.
    await jp_serverapp.extension_manager.stop_all_extensions()
