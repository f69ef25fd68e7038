"""The Jupyter server that opens spawned notebooks: the host server, or a child process."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from urllib.parse import quote

log = logging.getLogger(__name__)

#: Notebook front ends in order of preference: (module, URL path of a notebook).
FRONT_ENDS = (("jupyterlab", "lab/tree/"), ("notebook", "notebooks/"))


class JupyterUnavailable(RuntimeError):
    """No Jupyter server can be started here; the message says what to install."""


class NotebookServer:
    """Where notebooks open: ``root_dir`` is the folder their URLs are relative to."""

    mode = ""
    root_dir = ""

    async def url_for(self, path: str) -> str:
        raise NotImplementedError

    def status(self) -> dict:
        raise NotImplementedError

    async def stop(self) -> None:
        """Stop what this object started (nothing, for the host server)."""


def notebook_url(base: str, front_end_path: str | None, relative: str, token: str = "") -> str:
    """Return the URL that opens ``relative`` (a path under the server's root) in a front end."""
    if front_end_path is None:
        front_end_path = "api/contents/"  # Plain Jupyter Server: the notebook's JSON only.
    url = base.rstrip("/") + "/" + front_end_path + quote(relative.replace(os.sep, "/"))
    return url + ("?token=" + token if token else "")


class HostJupyterServer(NotebookServer):
    """The Jupyter server this extension runs in: same contents, kernels and login."""

    mode = "extension"

    def __init__(self, serverapp):
        self.serverapp = serverapp
        self.root_dir = os.path.realpath(serverapp.root_dir)

    async def url_for(self, path: str) -> str:
        relative = os.path.relpath(path, self.root_dir)
        base = self.serverapp.base_url
        return notebook_url(base, self._front_end_path(), relative)

    def _front_end_path(self) -> str | None:
        enabled = getattr(self.serverapp, "jpserver_extensions", {}) or {}
        for module, path in FRONT_ENDS:
            if enabled.get(module):
                return path
        return None

    def status(self) -> dict:
        return {"running": True, "url": self.serverapp.base_url, "pid": os.getpid()}


class ChildJupyterServer(NotebookServer):
    """A Jupyter server started on demand as a child process, for the standalone server.

    It listens on 127.0.0.1 on a free port with a random token and XSRF checks on,
    its root at the store, and is reused by later spawns. It ends when
    :meth:`stop` is called, and with this process (Linux parent-death signal),
    also when this process is killed.
    """

    mode = "standalone"

    def __init__(self, root_dir: str, startup_timeout: float = 30.0):
        self.root_dir = os.path.realpath(root_dir)
        self.startup_timeout = startup_timeout
        self._process: subprocess.Popen | None = None
        self._url = ""
        self._token = ""
        self._front_end_path: str | None = None
        self._config_dir: tempfile.TemporaryDirectory | None = None
        self._starting: asyncio.Lock | None = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def status(self) -> dict:
        if not self.running:
            return {"running": False, "url": None, "pid": None}
        assert self._process is not None
        return {"running": True, "url": self._url + "?token=" + self._token, "pid": self._process.pid}

    async def url_for(self, path: str) -> str:
        await self.ensure_running()
        relative = os.path.relpath(path, self.root_dir)
        return notebook_url(self._url, self._front_end_path, relative, self._token)

    async def ensure_running(self) -> None:
        """Start the child unless it runs; raise JupyterUnavailable or TimeoutError."""
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if self.running:
                return
            command = self._command()
            await asyncio.get_running_loop().run_in_executor(None, self._start, command)

    def _command(self) -> list[str]:
        if importlib.util.find_spec("jupyter_server") is None:
            raise JupyterUnavailable("Jupyter is not installed; install it with 'pip install jupyterlab'")
        module = "jupyter_server"
        self._front_end_path = None
        for candidate, path in FRONT_ENDS:
            if importlib.util.find_spec(candidate) is not None:
                module, self._front_end_path = candidate, path
                break
        return [sys.executable, "-m", module]

    def _start(self, command: list[str]) -> None:
        port = _free_port()
        self._token = secrets.token_hex(24)
        self._url = "http://127.0.0.1:%d/" % port
        # The child must not load this package's own extension: it has no store to serve.
        self._config_dir = tempfile.TemporaryDirectory(prefix="expman-jupyter-")
        config = os.path.join(self._config_dir.name, "jupyter_server_config.json")
        with open(config, "w") as f:
            json.dump({"ServerApp": {"jpserver_extensions": {"expman_tornado": False}}}, f)
        arguments = command + [
            "--ServerApp.ip=127.0.0.1",
            "--ServerApp.port=%d" % port,
            "--ServerApp.port_retries=0",
            "--ServerApp.open_browser=False",
            "--ServerApp.root_dir=%s" % self.root_dir,
            "--ServerApp.disable_check_xsrf=False",
            "--IdentityProvider.token=%s" % self._token,
            "--config=%s" % config,
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            arguments.append("--ServerApp.allow_root=True")  # Containers often run as root.
        log.info("Starting a Jupyter server for notebooks: %s on %s", command[-1], self._url)
        self._process = subprocess.Popen(
            arguments, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, preexec_fn=_end_with_parent, cwd=self.root_dir,
        )
        self._wait_ready()

    def _wait_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.startup_timeout
        request = urllib.request.Request(self._url + "api/status",
                                         headers={"Authorization": "token " + self._token})
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                error = self._process.stderr.read().decode("utf-8", "replace")[-500:] if self._process.stderr else ""
                self._process = None
                raise JupyterUnavailable("the Jupyter server exited at start: %s" % error.strip())
            try:
                with urllib.request.urlopen(request, timeout=2):
                    break
            except OSError:
                time.sleep(0.2)
        else:
            self._terminate()
            raise TimeoutError("the Jupyter server did not answer within %g s" % self.startup_timeout)
        # Its log is not read from here on; keep the pipe from filling up.
        if self._process.stderr is not None:
            self._process.stderr.close()
        log.info("Jupyter server ready (pid %d)", self._process.pid)

    async def stop(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._terminate)

    def _terminate(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            log.info("Stopping the Jupyter server (pid %d)", process.pid)
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        if self._config_dir is not None:
            self._config_dir.cleanup()
            self._config_dir = None

    def terminate_now(self) -> None:
        """Stop the child from a non-async context (at exit)."""
        self._terminate()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _end_with_parent() -> None:
    """Ask Linux to send SIGTERM to the child when its parent dies (prctl PR_SET_PDEATHSIG)."""
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)
        except OSError:
            pass
    os.setsid()
