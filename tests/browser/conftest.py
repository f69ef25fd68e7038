"""Fixtures of the browser tests: a store written by the real logger, servers, Chromium.

The tests drive Debian's Chromium (``/usr/bin/chromium``) through Playwright
for Python; they never download a browser. Without either, they are skipped,
unless ``EXPMAN_REQUIRE_BROWSER=1`` is set (as CI should), which turns the
skip into a failure.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from .store import LiveRun, open_nan_run, write_big_run, write_browser_store

CHROMIUM = "/usr/bin/chromium"
#: Flags for Chromium running as root in a sandboxed machine that reaches no network.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "screenshots")
#: Seconds to wait for a new server to respond to its first request.
SERVER_START_SECONDS = 60
#: Milliseconds Playwright waits for an element or event by default.
DEFAULT_TIMEOUT_MS = 15000


def browser_missing() -> str | None:
    """Return why the browser tests cannot run here, or None when they can."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install playwright; Debian's chromium is used, no 'playwright install')"
    if not os.path.exists(CHROMIUM):
        return "%s is missing (apt-get install -y chromium)" % CHROMIUM
    return None


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "browser: drives Chromium through Playwright")


def pytest_collection_modifyitems(config, items) -> None:
    reason = browser_missing()
    if reason is None or os.environ.get("EXPMAN_REQUIRE_BROWSER") == "1":
        return
    for item in items:
        if item.get_closest_marker("browser") is not None:
            item.add_marker(pytest.mark.skip(reason=reason))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """``python -m expman_tornado`` in a child process, on 127.0.0.1.

    ``launch`` starts it and ``wait_ready`` waits until it responds, so that
    several servers can start side by side.
    """

    def __init__(self, store: str, log_folder: str, base_url: str = "/"):
        self.store = store
        self.base_url = base_url
        self.port = free_port()
        self.log_path = os.path.join(log_folder, "server-%d.log" % self.port)
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return "http://127.0.0.1:%d%s" % (self.port, self.base_url)

    def launch(self) -> "ServerProcess":
        command = [sys.executable, "-m", "expman_tornado", self.store, "--ip=127.0.0.1", "--port=%d" % self.port]
        if self.base_url != "/":
            command.append("--base-url=%s" % self.base_url)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        return self

    def wait_ready(self) -> "ServerProcess":
        deadline = time.monotonic() + SERVER_START_SECONDS
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                with urllib.request.urlopen(self.url + "api/server", timeout=2) as reply:
                    if reply.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                time.sleep(0.2)
        self.stop()
        with open(self.log_path, encoding="utf-8", errors="replace") as log:
            tail = log.read()[-3000:]
        raise RuntimeError("expman_tornado did not start on port %d; its log:\n%s" % (self.port, tail))

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


# Every fixture below ends with the test module that uses it. Playwright's sync
# API keeps an asyncio loop running while it is open, and the rest of the suite
# (pytest-tornado, Jupyter Server's plugin) cannot run its own loop beside it.


@pytest.fixture(scope="module")
def browser_store(tmp_path_factory):
    """A store written by the real logger, with a run that keeps training and a 1,000,000-row run."""
    root = str(tmp_path_factory.mktemp("browser-store"))
    write_browser_store(root)
    write_big_run(root)
    live = LiveRun(root)
    nan_run = open_nan_run(root)
    yield {"root": root, "live": live}
    live.stop()
    nan_run.close()


#: Base URLs that the dashboard is tested under besides "/": one level, and a deeper one.
PREFIXES = ["/expman/", "/user/alice/expman/"]


@pytest.fixture(scope="module")
def servers(browser_store, tmp_path_factory) -> dict[str, ServerProcess]:
    """Servers over the browser store, by base URL ("/" and ``PREFIXES``), started side by side."""
    logs = str(tmp_path_factory.mktemp("server-logs"))
    started = {base: ServerProcess(browser_store["root"], logs, base).launch() for base in ["/"] + PREFIXES}
    try:
        for process in started.values():
            process.wait_ready()
        yield started
    finally:
        for process in started.values():
            process.stop()


@pytest.fixture(scope="module")
def server(servers) -> ServerProcess:
    """The server at ``/``."""
    return servers["/"]


@pytest.fixture(scope="module")
def browser():
    reason = browser_missing()
    if reason is not None:
        pytest.fail("EXPMAN_REQUIRE_BROWSER=1 asks for the browser tests, but " + reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Console:
    """Errors a page logged to its console or threw, and which of them a test expects."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.allowed: list[re.Pattern] = []

    def allow(self, pattern: str) -> None:
        self.allowed.append(re.compile(pattern))

    def unexpected(self) -> list[str]:
        return [error for error in self.errors if not any(pattern.search(error) for pattern in self.allowed)]


@pytest.fixture
def console() -> Console:
    return Console()


@pytest.fixture
def page(browser, console):
    """A fresh page (light theme, 1400×900); the test fails if it logs an unexpected console error."""
    context = browser.new_context(viewport={"width": 1400, "height": 900}, color_scheme="light")
    context.set_default_timeout(DEFAULT_TIMEOUT_MS)
    page = context.new_page()
    page.on("console", lambda message: console.errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: console.errors.append("uncaught: %s" % error))
    yield page
    context.close()
    assert console.unexpected() == [], "the page logged errors to its console"


def screenshot(page, name: str) -> str:
    """Save a screenshot of the whole page as screenshots/<name>.png; return its path."""
    os.makedirs(SCREENSHOTS, exist_ok=True)
    path = os.path.join(SCREENSHOTS, name + ".png")
    page.screenshot(path=path, full_page=True)
    return path


def copy_to_docs(path: str, name: str) -> None:
    """Copy a screenshot to docs/ when EXPMAN_UPDATE_DOCS_SCREENSHOTS=1 (for the README)."""
    if os.environ.get("EXPMAN_UPDATE_DOCS_SCREENSHOTS") != "1":
        return
    docs = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "docs")
    shutil.copyfile(path, os.path.join(docs, name))
