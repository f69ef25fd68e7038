"""The dashboard inside a real Jupyter Server, at <base_url>expman/, behind its token."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from urllib.parse import urlparse

import pytest

from .conftest import SERVER_START_SECONDS, free_port, screenshot
from .store import LIVE_EXPERIMENT

pytestmark = pytest.mark.browser

JUPYTER_BASE = "/user/alice/"


@pytest.fixture(scope="module")
def jupyter(browser_store, tmp_path_factory):
    """``jupyter server`` with the extension enabled, its root holding the store as ``experiments``."""
    root = str(tmp_path_factory.mktemp("jupyter-root"))
    os.symlink(browser_store["root"], os.path.join(root, "experiments"))
    config_dir = str(tmp_path_factory.mktemp("jupyter-config"))
    with open(os.path.join(config_dir, "jupyter_server_config.json"), "w") as f:
        json.dump({"ServerApp": {"jpserver_extensions": {"expman_tornado": True}}}, f)
    port, token = free_port(), secrets.token_hex(16)
    env = dict(os.environ, JUPYTER_CONFIG_DIR=config_dir, JUPYTER_TOKEN=token)
    log_path = os.path.join(config_dir, "server.log")
    command = [sys.executable, "-m", "jupyter_server", "--ServerApp.ip=127.0.0.1",
               "--ServerApp.port=%d" % port, "--ServerApp.open_browser=False",
               "--ServerApp.base_url=" + JUPYTER_BASE, "--ServerApp.root_dir=" + root]
    if os.geteuid() == 0:
        command.append("--ServerApp.allow_root=True")
    with open(log_path, "ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root)
    url = "http://127.0.0.1:%d%sexpman/" % (port, JUPYTER_BASE)
    try:
        deadline = time.monotonic() + SERVER_START_SECONDS
        while True:
            try:
                with urllib.request.urlopen(url + "api/server?token=" + token, timeout=2) as reply:
                    if json.load(reply)["live"]:
                        break
            except (urllib.error.URLError, OSError, KeyError, ValueError):
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                with open(log_path, errors="replace") as log:
                    raise RuntimeError("jupyter server did not serve /expman/:\n" + log.read()[-3000:])
            time.sleep(0.3)
        yield {"url": url, "token": token}
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def test_dashboard_in_jupyter_server(page, jupyter, console):
    requests: list[str] = []
    page.on("request", lambda request: requests.append(urlparse(request.url).path))

    page.goto(jupyter["url"] + "?token=" + jupyter["token"])
    page.locator("[data-testid=experiments] a", has_text=LIVE_EXPERIMENT).click()
    page.wait_for_url("**/user/alice/expman/experiments/%s" % LIVE_EXPERIMENT)
    page.locator("[data-testid=runs-table] tbody tr").first.wait_for()
    screenshot(page, "jupyter-runs")

    deep_link = page.url
    page.reload()
    page.locator("[data-testid=runs-table] tbody tr").first.wait_for()
    assert page.url == deep_link

    prefix = JUPYTER_BASE + "expman/"
    outside = [path for path in requests if not path.startswith(prefix)]
    assert outside == []
    assert any(path.startswith(prefix + "api/") for path in requests)


def test_dashboard_in_jupyter_needs_login(page, jupyter):
    response = page.goto(jupyter["url"])
    assert "/user/alice/login" in page.url or (response is not None and response.status in (302, 403))
