"""Notebooks in standalone mode: a Jupyter server started as a child process, and its end."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from expman_tornado.jupyter import servers
from expman_tornado.jupyter.servers import ChildJupyterServer

from .conftest import assert_api_error

#: Headers that pass the XSRF check of a server without a token: the cookie and its echo.
XSRF = {"Cookie": "_xsrf=abcd", "X-XSRFToken": "abcd"}

#: Seconds a real Jupyter child may take to respond. It took 3 to 6 s here on 2 cores, several
#: times more under load.
JUPYTER_START_TIMEOUT = 60.0

#: Seconds within which a process must be gone after a signal or a stop request.
GONE_TIMEOUT = 20.0


@pytest.fixture
def store_root(tmp_path, real_store) -> str:
    """A copy of the real-logger store, since spawning writes notebooks into it."""
    root = str(tmp_path / "store")
    shutil.copytree(real_store, root)
    return root


@pytest.fixture
def server_config() -> dict:
    return {"jupyter_startup_timeout": JUPYTER_START_TIMEOUT}


@pytest.fixture
def notebooks(app):
    """The notebook server of the ``app`` fixture; the child of the one in use at the end is stopped."""
    extra = app.settings["expman"].extra
    yield extra["notebooks"]
    extra["notebooks"].terminate_now()


def use_notebook_server(app, server) -> None:
    app.settings["expman"].extra["notebooks"] = server


async def spawn(http_client, base_url, raise_error=True, **fields):
    body = json.dumps({"experiment": "vision", **fields})
    return await http_client.fetch(base_url + "/api/jupyter/spawn", method="POST", body=body,
                                   headers=XSRF, raise_error=raise_error)


async def get_json(http_client, url: str):
    response = await http_client.fetch(url)
    return json.loads(response.body)


def is_gone(pid: int) -> bool:
    """Whether no process ``pid`` runs; a zombie, dead but not yet reaped, counts as gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return state in ("Z", "X")


def wait_gone(pid: int, timeout: float = GONE_TIMEOUT) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if is_gone(pid):
            return True
        time.sleep(0.05)
    return is_gone(pid)


def command_line(pid: int) -> list[str]:
    with open("/proc/%d/cmdline" % pid, "rb") as f:
        return [part.decode() for part in f.read().split(b"\0") if part]


def fetch_status(url: str, headers: dict | None = None) -> int:
    """Return the HTTP status of a GET to ``url``, sent straight to 127.0.0.1 (no proxy)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(urllib.request.Request(url, headers=headers or {}), timeout=10) as reply:
            return reply.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.gen_test(timeout=150)
async def test_child_lifecycle(http_client, base_url, notebooks, store_root, tmp_path,
                               monkeypatch):
    # Where the package's etc/jupyter file enables the extension, the child still must not load it.
    enabling = tmp_path / "enabling-config"
    (enabling / "jupyter_server_config.d").mkdir(parents=True)
    (enabling / "jupyter_server_config.d" / "expman_tornado.json").write_text(
        json.dumps({"ServerApp": {"jpserver_extensions": {"expman_tornado": True}}}))
    monkeypatch.setenv("JUPYTER_CONFIG_PATH", str(enabling))

    # Two spawns at once start one child.
    first, second = await asyncio.gather(
        spawn(http_client, base_url, run="baseline"),
        spawn(http_client, base_url, runs=["baseline", "nan"]),
    )
    one, several = json.loads(first.body), json.loads(second.body)
    assert one["mode"] == "standalone"
    assert one["path"] == os.path.join(os.path.realpath(store_root), "vision", "baseline",
                                       "interactive.ipynb")
    assert several["path"] == os.path.join(os.path.realpath(store_root), "vision",
                                           "interactive.ipynb")
    assert os.path.isfile(one["path"])
    assert os.path.isfile(several["path"])
    match = re.fullmatch(r"http://127\.0\.0\.1:(\d+)/api/contents/vision/baseline/"
                         r"interactive\.ipynb\?token=([0-9a-f]{32,})", one["url"])
    assert match, one["url"]
    port, token = match.groups()
    assert several["url"] == "http://127.0.0.1:%s/api/contents/vision/interactive.ipynb?token=%s" % (
        port, token)

    # The URL opens the notebook, and the child rejects every request without the token.
    model = await get_json(http_client, one["url"])
    assert model["type"] == "notebook"
    assert model["content"]["metadata"]["expman_tornado"]["runs"] == ["baseline"]
    child = "http://127.0.0.1:%s/" % port
    assert fetch_status(child + "api/status") == 403
    assert fetch_status(child + "api/status?token=wrong") == 403
    assert fetch_status(child + "api/status", {"Authorization": "token " + token}) == 200
    assert fetch_status(child + "expman/api/server?token=" + token) == 404

    status = await get_json(http_client, base_url + "/api/jupyter/status")
    assert status == {"running": True, "url": child + "?token=" + token, "pid": status["pid"]}
    pid = status["pid"]
    arguments = command_line(pid)
    assert "--ServerApp.ip=127.0.0.1" in arguments
    assert "--ServerApp.disable_check_xsrf=False" in arguments
    assert not any(token in argument for argument in arguments), "the token is in the process list"

    # A later spawn reuses the child.
    again = json.loads((await spawn(http_client, base_url, run="failed")).body)
    assert again["url"].startswith(child)
    assert (await get_json(http_client, base_url + "/api/jupyter/status"))["pid"] == pid

    response = await http_client.fetch(base_url + "/api/jupyter/stop", method="POST", body=b"",
                                       headers=XSRF)
    assert json.loads(response.body) == {"running": False, "url": None, "pid": None}
    assert wait_gone(pid), "the Jupyter child %d still runs after stop" % pid
    assert await get_json(http_client, base_url + "/api/jupyter/status") == {
        "running": False, "url": None, "pid": None}

    # Stopping again is harmless.
    response = await http_client.fetch(base_url + "/api/jupyter/stop", method="POST", body=b"",
                                       headers=XSRF)
    assert json.loads(response.body)["running"] is False


@pytest.mark.parametrize(
    "installed, module, url",
    [({"jupyter_server", "jupyterlab", "notebook"}, "jupyterlab", "lab/tree/e/r/interactive.ipynb"),
     ({"jupyter_server", "notebook"}, "notebook", "notebooks/e/r/interactive.ipynb"),
     ({"jupyter_server"}, "jupyter_server", "api/contents/e/r/interactive.ipynb")],
    ids=["jupyterlab", "notebook", "jupyter_server"],
)
def test_child_front_end_choice(tmp_path, monkeypatch, installed, module, url):
    monkeypatch.setattr(servers, "find_spec", lambda name: object() if name in installed else None)
    server = ChildJupyterServer(str(tmp_path))

    assert server._command() == [sys.executable, "-m", module]
    assert servers.notebook_url("http://127.0.0.1:1/", server._front_end_path,
                                "e/r/interactive.ipynb", "t") == "http://127.0.0.1:1/%s?token=t" % url


@pytest.mark.gen_test
async def test_status_before_spawn(http_client, base_url, notebooks):
    status = await get_json(http_client, base_url + "/api/jupyter/status")

    assert status == {"running": False, "url": None, "pid": None}


@pytest.mark.gen_test
async def test_stop_without_child(http_client, base_url, notebooks):
    response = await http_client.fetch(base_url + "/api/jupyter/stop", method="POST", body=b"",
                                       headers=XSRF)

    assert json.loads(response.body) == {"running": False, "url": None, "pid": None}


@pytest.mark.gen_test
async def test_spawn_needs_xsrf(http_client, base_url, notebooks, store_root):
    response = await http_client.fetch(
        base_url + "/api/jupyter/spawn", method="POST", raise_error=False,
        body=json.dumps({"experiment": "vision", "run": "baseline"}))

    assert_api_error(response, 403, "XSRF")
    assert not os.path.exists(os.path.join(store_root, "vision", "baseline", "interactive.ipynb"))


@pytest.mark.gen_test
async def test_bad_body_before_jupyter(http_client, base_url, notebooks, monkeypatch):
    # A request that is wrong gets its 400 even where Jupyter is missing.
    monkeypatch.setattr(servers, "find_spec", lambda name: None)

    response = await spawn(http_client, base_url, raise_error=False, run=3)

    assert_api_error(response, 400, "run")


@pytest.mark.gen_test
async def test_unknown_run_404(http_client, base_url, notebooks):
    response = await spawn(http_client, base_url, raise_error=False, run="nope")

    assert_api_error(response, 404, "nope")
    assert notebooks.status()["running"] is False


class TestReadOnly:
    @pytest.fixture
    def server_config(self) -> dict:
        return {"read_only": True}

    @pytest.mark.gen_test
    async def test_spawn_refused(self, http_client, base_url, notebooks, store_root):
        response = await spawn(http_client, base_url, raise_error=False, run="baseline")

        assert_api_error(response, 403, "read-only")
        assert not os.path.exists(os.path.join(store_root, "vision", "baseline",
                                               "interactive.ipynb"))


@pytest.mark.gen_test(timeout=20)
async def test_jupyter_missing_501(http_client, base_url, notebooks, store_root, monkeypatch):
    monkeypatch.setattr(servers, "find_spec", lambda name: None)
    started = time.monotonic()

    response = await spawn(http_client, base_url, raise_error=False, run="baseline")

    error = assert_api_error(response, 501, "pip install")
    assert "jupyter" in error["message"].lower()
    assert time.monotonic() - started < 5
    assert not os.path.exists(os.path.join(store_root, "vision", "baseline", "interactive.ipynb"))


class RecordingChild(ChildJupyterServer):
    """A child server with its own command, that records the pid of every process it started."""

    def __init__(self, root_dir: str, module_code: str, startup_timeout: float = 30.0):
        super().__init__(root_dir, startup_timeout)
        self.module_code = module_code
        self.pids: list[int] = []

    def _command(self) -> list[str]:
        return [sys.executable, "-m", self.module_code]

    def _launch(self, command: list[str]) -> None:
        super()._launch(command)
        assert self._process is not None
        self.pids.append(self._process.pid)


def module_file(tmp_path, monkeypatch, name: str, code: str) -> str:
    """Write a module that the child can run with ``python -m``; return its name."""
    folder = tmp_path / "modules"
    folder.mkdir(exist_ok=True)
    (folder / (name + ".py")).write_text(code)
    path = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", str(folder) + (os.pathsep + path if path else ""))
    return name


@pytest.mark.gen_test(timeout=20)
async def test_missing_module_501(http_client, base_url, app, notebooks, store_root):
    server = RecordingChild(store_root, "no_such_jupyter_module")
    use_notebook_server(app, server)
    started = time.monotonic()

    response = await spawn(http_client, base_url, raise_error=False, run="baseline")

    error = assert_api_error(response, 501, "no_such_jupyter_module")
    assert "exited at start" in error["message"]
    assert time.monotonic() - started < 10
    assert server.pids and wait_gone(server.pids[0])
    assert server.status() == {"running": False, "url": None, "pid": None}


#: A server that returns 200 to every GET, with a token or without, on --ServerApp.port.
OPEN_SERVER = """
import http.server, sys
port = int(next(a for a in sys.argv if a.startswith("--ServerApp.port=")).split("=")[1])


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"{}")


http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""


@pytest.mark.gen_test(timeout=30)
async def test_child_without_token_rejected(http_client, base_url, app, notebooks, store_root,
                                            tmp_path, monkeypatch):
    server = RecordingChild(store_root, module_file(tmp_path, monkeypatch, "open_server",
                                                    OPEN_SERVER))
    use_notebook_server(app, server)

    response = await spawn(http_client, base_url, raise_error=False, run="baseline")

    assert_api_error(response, 501, "without requiring a token")
    assert wait_gone(server.pids[0], timeout=5)
    assert server.status()["running"] is False
    assert not os.path.exists(os.path.join(store_root, "vision", "baseline", "interactive.ipynb"))


@pytest.mark.gen_test(timeout=30)
async def test_start_timeout_503(http_client, base_url, app, notebooks, store_root, tmp_path,
                                 monkeypatch):
    silent = module_file(tmp_path, monkeypatch, "silent_server",
                         "import sys, time\nprint('starting', flush=True)\ntime.sleep(60)\n")
    server = RecordingChild(store_root, silent, startup_timeout=1.5)
    use_notebook_server(app, server)
    started = time.monotonic()

    response = await spawn(http_client, base_url, raise_error=False, run="baseline")

    error = assert_api_error(response, 503, "did not respond within 1.5 s")
    assert "starting" in error["message"]
    assert response.headers["Retry-After"] == "5"
    assert time.monotonic() - started < 10
    assert len(server.pids) == 1
    assert wait_gone(server.pids[0], timeout=5)
    assert server.status()["running"] is False


@pytest.mark.gen_test(timeout=40)
async def test_start_timeout_kills_stubborn_child(http_client, base_url, app, notebooks,
                                                  store_root, tmp_path, monkeypatch):
    stubborn = module_file(tmp_path, monkeypatch, "stubborn_server",
                           "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                           "time.sleep(60)\n")
    server = RecordingChild(store_root, stubborn, startup_timeout=1.0)
    server.stop_timeout = 1.0
    use_notebook_server(app, server)

    response = await spawn(http_client, base_url, raise_error=False, run="baseline")

    assert_api_error(response, 503)
    assert wait_gone(server.pids[0], timeout=5)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def post_json(url: str) -> dict:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    body = json.dumps({"experiment": "vision", "run": "baseline"}).encode()
    request = urllib.request.Request(url, data=body, method="POST", headers=XSRF)
    with opener.open(request, timeout=JUPYTER_START_TIMEOUT) as reply:
        return json.loads(reply.read())


def wait_listening(port: int, process: subprocess.Popen, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail("expman-tornado exited at start with code %d" % process.returncode)
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    pytest.fail("expman-tornado did not listen on port %d within %g s" % (port, timeout))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL],
                         ids=["SIGTERM", "SIGINT", "SIGKILL"])
def test_child_ends_with_server(store_root, tmp_path, signum):
    port = free_port()
    environment = {name: value for name, value in os.environ.items()
                   if name.lower() not in ("http_proxy", "https_proxy")}
    environment["JUPYTER_CONFIG_DIR"] = str(tmp_path / "jupyter-config")
    with open(tmp_path / "server.log", "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "expman_tornado", store_root, "--port=%d" % port],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=environment,
            cwd=tmp_path,
        )
    child = None
    try:
        wait_listening(port, process)
        answer = post_json("http://127.0.0.1:%d/api/jupyter/spawn" % port)
        child = int(json.loads(urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
            "http://127.0.0.1:%d/api/jupyter/status" % port, timeout=10).read())["pid"])
        assert answer["url"].startswith("http://127.0.0.1:")
        assert not is_gone(child)

        process.send_signal(signum)

        process.wait(GONE_TIMEOUT)
        assert wait_gone(child), "the Jupyter child %d outlived expman-tornado" % child
        if signum != signal.SIGKILL:
            assert process.returncode == 0, (tmp_path / "server.log").read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(GONE_TIMEOUT)
        if child is not None and not is_gone(child):
            os.kill(child, signal.SIGKILL)
