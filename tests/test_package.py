"""The built wheel, installed outside the source tree: the dashboard files ship and the server starts.

A wheel is built from a copy of the working tree (never from its ``build/``
folder, whose leftovers a build would pack), installed with
``pip install --target``, and run in subprocesses whose ``PYTHONPATH`` holds
only that install. Both tests together took about 8 s on an idle 2-core machine.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from .stores import make_run, metric_table, write_parquet

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: Folders of a working tree that are not part of a source distribution.
NOT_SOURCE = shutil.ignore_patterns(".git", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache",
                                    ".venv", "node_modules", "benchmarks")

#: The server starts in about 4 s on an idle 2-core machine, and several times slower under load.
SERVER_START_SECONDS = 60.0


def run_checked(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, **kwargs)
    assert result.returncode == 0, "%s failed:\n%s\n%s" % (" ".join(command), result.stdout[-2000:],
                                                           result.stderr[-2000:])
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> str:
    """Return a folder holding the package as ``pip install --target`` puts a built wheel."""
    work = tmp_path_factory.mktemp("package")
    source = str(work / "source")
    shutil.copytree(REPO, source, ignore=NOT_SOURCE)
    wheels = str(work / "wheels")
    run_checked([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                 "--wheel-dir", wheels, source])
    [wheel] = glob.glob(os.path.join(wheels, "expman_tornado-*.whl"))
    target = str(work / "site")
    run_checked([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", target, wheel])
    return target


def installed_env(target: str) -> dict:
    env = dict(os.environ, PYTHONPATH=target, PYTHONNOUSERSITE="1")
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        env.pop(name, None)
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_wheel_ships_frontend_files(installed, tmp_path):
    script = ("import json, expman_tornado, expman_tornado.paths as p; "
              "print(json.dumps([expman_tornado.__file__, p.frontend_dir()]))")
    result = run_checked([sys.executable, "-c", script], env=installed_env(installed), cwd=str(tmp_path))
    package_file, frontend = json.loads(result.stdout)
    assert package_file.startswith(installed + os.sep)
    assert frontend.startswith(installed + os.sep)
    assert os.path.isfile(os.path.join(frontend, "index.html"))


def test_installed_server_serves_api(installed, tmp_path):
    store = str(tmp_path / "store")
    write_parquet(os.path.join(make_run(store, "exp", "run"), "vectors.parquet"), metric_table([0], loss=[1.0]))
    port = free_port()
    base = "http://127.0.0.1:%d" % port
    log_path = str(tmp_path / "server.log")
    with open(log_path, "w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "expman_tornado", store, "--port=%d" % port, "--ip=127.0.0.1"],
            env=installed_env(installed), cwd=str(tmp_path), stdout=log, stderr=subprocess.STDOUT,
        )
    try:
        experiments = wait_for_json(base + "/api/experiments", server, log_path)
        assert [e["id"] for e in experiments] == ["exp"]
        with urllib.request.urlopen(base + "/", timeout=10) as response:
            page = response.read()
            content_type = response.headers["Content-Type"]
        assert content_type.startswith("text/html")
        assert b"<html" in page.lower()
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)


def wait_for_json(url: str, server: subprocess.Popen, log_path: str):
    """Return the JSON body of ``url`` once the server responds, failing if it exits or times out."""
    deadline = time.monotonic() + SERVER_START_SECONDS
    while time.monotonic() < deadline:
        if server.poll() is not None:
            break
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                assert response.headers["Content-Type"].startswith("application/json")
                return json.loads(response.read())
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.2)
    with open(log_path) as f:
        pytest.fail("the installed server did not serve %s:\n%s" % (url, f.read()[-3000:]))
