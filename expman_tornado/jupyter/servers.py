"""The Jupyter server that opens spawned notebooks: the host server, or a child process."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from importlib.util import find_spec
from urllib.parse import quote

from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.simple_httpclient import SimpleAsyncHTTPClient

log = logging.getLogger(__name__)

#: Notebook front ends in order of preference: (module, URL path of a notebook).
FRONT_ENDS = (("jupyterlab", "lab/tree/"), ("notebook", "notebooks/"))


class JupyterUnavailable(RuntimeError):
    """No Jupyter server can be started here; the message gives the reason, or what to install."""


class NotebookServer:
    """The Jupyter server that opens notebooks; their URLs are relative to ``root_dir``."""

    mode = ""
    root_dir = ""

    async def ensure_running(self) -> None:
        """Start the server unless it runs; raise JupyterUnavailable or TimeoutError on failure."""

    async def url_for(self, path: str) -> str:
        """Return the URL that opens the notebook at ``path``, once the server runs."""
        raise NotImplementedError

    def status(self) -> dict:
        """Return ``{running, url, pid}``."""
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

    It listens on 127.0.0.1 on a free port with a random token and XSRF checks
    on, its root at the store, and is reused by later spawns. It ends when
    :meth:`stop` is called, and on Linux also when this process dies, even
    by SIGKILL: see :mod:`expman_tornado.jupyter.launch`.
    """

    mode = "standalone"

    #: Seconds the child gets to exit after SIGTERM before it is killed.
    stop_timeout = 10.0

    #: Seconds between two readiness checks while the child starts.
    poll_interval = 0.2

    def __init__(self, root_dir: str, startup_timeout: float = 30.0):
        self.root_dir = os.path.realpath(root_dir)
        self.startup_timeout = startup_timeout
        self._process: subprocess.Popen | None = None
        self._url = ""
        self._token = ""
        self._front_end_path: str | None = None
        self._work_dir: tempfile.TemporaryDirectory | None = None
        self._lock: asyncio.Lock | None = None
        self._ready = False

    @property
    def running(self) -> bool:
        """Whether the child responded to a readiness check and has not exited since."""
        return self._ready and self._process is not None and self._process.poll() is None

    def status(self) -> dict:
        if not self.running:
            return {"running": False, "url": None, "pid": None}
        assert self._process is not None
        return {"running": True, "url": self._url + "?token=" + self._token, "pid": self._process.pid}

    async def url_for(self, path: str) -> str:
        await self.ensure_running()
        relative = os.path.relpath(path, self.root_dir)
        return notebook_url(self._url, self._front_end_path, relative, self._token)

    def _get_lock(self) -> asyncio.Lock:
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    async def ensure_running(self) -> None:
        """Start the child unless it runs; raise JupyterUnavailable or TimeoutError on failure.

        Concurrent calls wait for one start. A child that fails to start is
        killed before the error is raised.
        """
        async with self._get_lock():
            if self.running:
                return
            self._terminate()  # Releases what a child that died since left behind.
            command = self._command()
            # Started on the IOLoop's thread: Linux sends the parent-death signal
            # when the thread that started the child exits, and this one lives
            # as long as the server.
            self._launch(command)
            try:
                await self._wait_ready()
            except asyncio.CancelledError:
                self._terminate()
                raise
            except Exception:
                await asyncio.get_running_loop().run_in_executor(None, self._terminate)
                raise
            self._ready = True

    def _command(self) -> list[str]:
        """Return ``python -m MODULE`` for the best front end installed, else raise JupyterUnavailable."""
        if find_spec("jupyter_server") is None:
            raise JupyterUnavailable(
                "Jupyter Server is not installed in %s; install it with 'pip install jupyterlab' "
                "(or 'pip install jupyter_server' for the contents API only)" % sys.prefix)
        module = "jupyter_server"
        self._front_end_path = None
        for candidate, path in FRONT_ENDS:
            if find_spec(candidate) is not None:
                module, self._front_end_path = candidate, path
                break
        return [sys.executable, "-m", module]

    def _launch(self, command: list[str]) -> None:
        """Start ``command`` (``python -m MODULE``) as the child, without waiting for it."""
        port = _free_port()
        self._token = secrets.token_hex(24)
        self._url = "http://127.0.0.1:%d/" % port
        self._work_dir = tempfile.TemporaryDirectory(prefix="expman-jupyter-")
        python, module = command[0], command[-1]
        arguments = [
            python, "-m", "expman_tornado.jupyter.launch", str(os.getpid()), module,
            "--ServerApp.ip=127.0.0.1",
            "--ServerApp.port=%d" % port,
            "--ServerApp.port_retries=0",
            "--ServerApp.open_browser=False",
            "--ServerApp.root_dir=%s" % self.root_dir,
            "--ServerApp.disable_check_xsrf=False",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            arguments.append("--ServerApp.allow_root=True")  # Containers often run as root.
        log_path = os.path.join(self._work_dir.name, "jupyter.log")
        log.info("Starting a Jupyter server for notebooks: %s on %s (its log: %s)",
                 module, self._url, log_path)
        with open(log_path, "wb") as log_file:
            # The child's output goes to a file, because a pipe that is never
            # read would fill up and block the child.
            self._process = subprocess.Popen(
                arguments, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                cwd=self.root_dir, env=self._child_environment(), start_new_session=True,
            )

    def _child_environment(self) -> dict[str, str]:
        """Return the child's environment: the token, and this package's extension turned off.

        The token goes in ``JUPYTER_TOKEN`` rather than on the command line,
        which other users of the machine can read in the process list. The
        extension is turned off by a ``jupyter_server_config.d`` file in a
        config folder of higher priority than the one where the package
        enables it: the child serves notebooks only.
        """
        assert self._work_dir is not None
        config_dir = os.path.join(self._work_dir.name, "config")
        os.makedirs(os.path.join(config_dir, "jupyter_server_config.d"))
        switch = os.path.join(config_dir, "jupyter_server_config.d", "expman_tornado.json")
        with open(switch, "w") as f:
            json.dump({"ServerApp": {"jpserver_extensions": {"expman_tornado": False}}}, f)
        environment = dict(os.environ)
        environment["JUPYTER_TOKEN"] = self._token
        config_path = environment.get("JUPYTER_CONFIG_PATH")
        environment["JUPYTER_CONFIG_PATH"] = (
            config_dir + os.pathsep + config_path if config_path else config_dir)
        return environment

    async def _wait_ready(self) -> None:
        """Poll the child's ``/api/status`` until it responds; raise if it exits or times out first."""
        assert self._process is not None
        deadline = time.monotonic() + self.startup_timeout
        client = SimpleAsyncHTTPClient(force_instance=True)
        request = HTTPRequest(self._url + "api/status",
                              headers={"Authorization": "token " + self._token},
                              connect_timeout=2, request_timeout=2)
        try:
            while time.monotonic() < deadline:
                if self._process.poll() is not None:
                    raise JupyterUnavailable("the Jupyter server exited at start with code %d: %s"
                                             % (self._process.returncode, self._log_tail()))
                try:
                    await client.fetch(request)
                    break
                except (OSError, HTTPClientError):
                    await asyncio.sleep(self.poll_interval)
            else:
                raise TimeoutError(
                    "the Jupyter server did not respond within %g s (raise jupyter_startup_timeout "
                    "if it needs longer). The end of its log: %s"
                    % (self.startup_timeout, self._log_tail()))
            await self._check_token_required(client)
        finally:
            client.close()
        log.info("Jupyter server ready (pid %d)", self._process.pid)

    async def _check_token_required(self, client: SimpleAsyncHTTPClient) -> None:
        """Raise JupyterUnavailable if the child serves a request that carries no token.

        A Jupyter config file can set an empty ``IdentityProvider.token``, and
        it wins over ``JUPYTER_TOKEN``. Such a child would run code for anyone
        who reaches its port, so it is not used.
        """
        response = await client.fetch(self._url + "api/status", raise_error=False,
                                      connect_timeout=2, request_timeout=2)
        if response.code in (401, 403):
            return
        log.error("The Jupyter server for notebooks (pid %d) returned status %d to a request "
                  "without its token; stopping it", self._process.pid if self._process else -1,
                  response.code)
        raise JupyterUnavailable(
            "the Jupyter server started without requiring a token (status %d without it), so it "
            "was stopped. Check the Jupyter config files (jupyter --paths) for an empty "
            "IdentityProvider.token or ServerApp.token." % response.code)

    def _log_tail(self, size: int = 500) -> str:
        """Return the end of the child's log, for error messages."""
        if self._work_dir is None:
            return ""
        try:
            with open(os.path.join(self._work_dir.name, "jupyter.log"), "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - size))
                return f.read().decode("utf-8", "replace").strip()
        except OSError:
            return ""

    async def stop(self) -> None:
        """Stop the child, waiting for it off the IOLoop. A start under way finishes first."""
        async with self._get_lock():
            await asyncio.get_running_loop().run_in_executor(None, self._terminate)

    def _terminate(self) -> None:
        process, self._process = self._process, None
        self._ready = False
        if process is not None and process.poll() is None:
            log.info("Stopping the Jupyter server (pid %d)", process.pid)
            process.terminate()
            try:
                process.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                log.warning("The Jupyter server (pid %d) did not exit within %g s of SIGTERM; "
                            "killing it", process.pid, self.stop_timeout)
                process.kill()
                process.wait()
        if self._work_dir is not None:
            self._work_dir.cleanup()
            self._work_dir = None

    def terminate_now(self) -> None:
        """Stop the child from a non-async context (at exit)."""
        self._terminate()


def _free_port() -> int:
    # NOTE: another program can take the port before the child binds it. The
    # child then exits at start, and the spawn fails with 501 and can be retried.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
