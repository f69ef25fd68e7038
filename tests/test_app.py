"""The application: traits, command line, config files, errors at start, the server process."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pyarrow.parquet as pq
import pytest
import yaml
from traitlets import Unicode
from traitlets.config.loader import PyFileConfigLoader

from expman_tornado.app import ExpmanTornado

from .conftest import assert_api_error, strict_json

#: Traits that users set most often. The help, the generated config file and the README list them.
MAIN_TRAITS = [
    "store",
    "ip",
    "port",
    "base_url",
    "watcher",
    "poll_interval",
    "stale_after",
    "disabled_handler_groups",
    "extra_handlers",
]

#: Seconds a server process gets to start, and then to stop after a signal.
START_TIMEOUT = 20.0
STOP_TIMEOUT = 15.0

STARTED = re.compile(r"Dashboard and API at (http://\S+)")

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def traits_without_help(cls: type) -> list[str]:
    """Return the names of the configurable traits of ``cls`` that have no help text."""
    traits = cls.class_traits(config=True)
    return sorted(name for name, trait in traits.items() if not (trait.help or "").strip())


def expman_command() -> list[str]:
    """Return the ``expman-tornado`` script beside Python, else ``python -m expman_tornado``."""
    script = os.path.join(os.path.dirname(sys.executable), "expman-tornado")
    if os.path.isfile(script):
        return [script]
    return [sys.executable, "-m", "expman_tornado"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def process_env(tmp_path) -> dict:
    """Return an environment with an empty Jupyter config folder and no proxies."""
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy")}
    env.pop("JUPYTER_CONFIG_PATH", None)
    env["JUPYTER_CONFIG_DIR"] = str(tmp_path / "jupyter-config")
    return env


def run_command(tmp_path, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    """Run ``expman-tornado`` with ``args`` in ``tmp_path`` until it exits."""
    return subprocess.run(
        expman_command() + list(args),
        cwd=tmp_path,
        env=process_env(tmp_path),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class ServerProcess:
    """An ``expman-tornado`` child process whose output goes to a file, stopped by a signal."""

    def __init__(self, tmp_path, *args: str):
        self.log_path = tmp_path / "server.log"
        self.log_file = open(self.log_path, "w")
        self.process = subprocess.Popen(
            expman_command() + list(args),
            cwd=tmp_path,
            env=process_env(tmp_path),
            stdin=subprocess.DEVNULL,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
        )
        self.url = self._wait_for_url()

    def log(self) -> str:
        return self.log_path.read_text()

    def _wait_for_url(self) -> str:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            match = STARTED.search(self.log())
            if match:
                return match.group(1)
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        self.kill()
        message = "the server did not log its URL within %.0f s:\n%s"
        pytest.fail(message % (START_TIMEOUT, self.log()))

    def get_json(self, path: str):
        with urllib.request.urlopen(self.url + path.lstrip("/"), timeout=10) as response:
            return strict_json(response.read())

    def stop(self, signum: int = signal.SIGTERM) -> int:
        """Send ``signum`` and return the exit code. Fail if the process keeps running."""
        self.process.send_signal(signum)
        try:
            return self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()
            message = "the server did not stop within %.0f s of signal %d"
            pytest.fail(message % (STOP_TIMEOUT, signum))

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=STOP_TIMEOUT)
        self.log_file.close()


@pytest.fixture
def server_process(tmp_path):
    """Start ``expman-tornado`` with the given arguments. Each process is killed after the test."""
    started: list[ServerProcess] = []

    def start(*args: str) -> ServerProcess:
        started.append(ServerProcess(tmp_path, *args))
        return started[-1]

    yield start
    for server in started:
        server.kill()


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """Run in an empty current folder with an empty Jupyter config folder, and restore logging."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(tmp_path / "jupyter-config"))
    monkeypatch.delenv("JUPYTER_CONFIG_PATH", raising=False)

    # initialize() attaches a stderr handler to these loggers and sets their levels.
    names = ["expman_tornado", "tornado", "tornado.access"]
    loggers = [logging.getLogger(name) for name in names]
    saved = [(logger, logger.level, list(logger.handlers)) for logger in loggers]
    yield cwd
    for logger, level, handlers in saved:
        logger.setLevel(level)
        logger.handlers[:] = handlers


def initialized(*argv: str) -> ExpmanTornado:
    """Return a new application after ``initialize(argv)``."""
    application = ExpmanTornado()
    application.initialize(list(argv))
    return application


# Traits and help


def test_config_traits_have_help():
    assert traits_without_help(ExpmanTornado) == []


def test_help_check_finds_missing_help():
    class Undocumented(ExpmanTornado):
        secret = Unicode("").tag(config=True)

    assert traits_without_help(Undocumented) == ["secret"]


@pytest.mark.parametrize("name", MAIN_TRAITS)
def test_main_trait_configurable(name):
    assert name in ExpmanTornado.class_traits(config=True)


@pytest.mark.parametrize("name", sorted(ExpmanTornado.class_own_traits(config=True)))
def test_readme_documents_trait(name):
    with open(os.path.join(REPOSITORY, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    assert "| `%s` |" % name in readme


def test_help_all_lists_main_traits(tmp_path):
    finished = run_command(tmp_path, "--help-all")
    assert finished.returncode == 0, finished.stderr
    for name in MAIN_TRAITS:
        assert "--ExpmanTornado.%s=" % name in finished.stdout
    for flag in ("--ip=", "--port=", "--base-url=", "--demo", "--watcher=", "--poll-interval="):
        assert flag in finished.stdout
    assert "Traceback" not in finished.stderr


def test_generate_config_commented(tmp_path):
    config_dir = tmp_path / "jupyter-config"
    finished = run_command(tmp_path, "--generate-config", "-y")
    assert finished.returncode == 0, finished.stderr
    path = config_dir / "expman_tornado_config.py"
    text = path.read_text()
    for name in MAIN_TRAITS:
        assert "# c.ExpmanTornado.%s = " % name in text
    assert "## Root folder of the experiment store." in text
    code = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    assert len(code) == 1
    assert code[0].startswith("c = get_config()")

    # The file is valid Python that sets nothing, and -y overwrites it without a prompt.
    assert PyFileConfigLoader(path.name, path=str(config_dir)).load_config() == {}
    again = run_command(tmp_path, "--generate-config", "-y")
    assert again.returncode == 0, again.stderr


# Config files and flags


@pytest.mark.parametrize("kind", ["py", "json"])
def test_config_file_in_cwd(workdir, kind):
    (workdir / "runs-here").mkdir()
    if kind == "py":
        (workdir / "expman_tornado_config.py").write_text(
            "c.ExpmanTornado.store = 'runs-here'\n"
            "c.ExpmanTornado.port = 9123\n"
            "c.ExpmanTornado.base_url = '/from-file/'\n"
        )
    else:
        settings = {"store": "runs-here", "port": 9123, "base_url": "/from-file/"}
        config = {"ExpmanTornado": settings}
        (workdir / "expman_tornado_config.json").write_text(json.dumps(config))

    application = initialized()

    assert application.store == "runs-here"
    assert application.port == 9123
    assert application.base_url == "/from-file/"


def test_config_file_in_jupyter_dir(workdir, tmp_path):
    config_dir = tmp_path / "jupyter-config"
    config_dir.mkdir()
    (config_dir / "expman_tornado_config.py").write_text(
        "c.ExpmanTornado.store = %r\n"
        "c.ExpmanTornado.port = 9124\n"
        "c.ExpmanTornado.ip = '127.0.0.3'\n" % str(workdir)
    )
    config = {"ExpmanTornado": {"port": 9125}}
    (workdir / "expman_tornado_config.json").write_text(json.dumps(config))

    application = initialized()

    assert application.store == str(workdir)
    assert application.ip == "127.0.0.3"
    assert application.port == 9125  # The file in the current folder wins.


def test_flags_set_traits(workdir, real_store):
    application = initialized(real_store, "--ip=127.0.0.2", "--port=8765", "--base-url=expman")
    assert application.store == real_store
    assert application.ip == "127.0.0.2"
    assert application.port == 8765
    assert application.base_url == "/expman/"


def test_flags_override_config_file(workdir, real_store):
    (workdir / "expman_tornado_config.py").write_text("c.ExpmanTornado.port = 9123\n")
    application = initialized(real_store, "--port=9200")
    assert application.port == 9200


def test_long_flags_set_traits(workdir, real_store):
    application = initialized(
        "--store=" + real_store,
        "--stale-after=60",
        "--disable=frontend",
        "--watcher=poll",
        "--poll-interval=2.5",
    )
    assert application.store == real_store
    assert application.stale_after == 60.0
    assert application.disabled_handler_groups == ["frontend"]
    assert application.watcher == "poll"
    assert application.poll_interval == 2.5


@pytest.mark.parametrize(
    "given, expected",
    [("/", "/"), ("", "/"), ("expman", "/expman/"), ("/expman", "/expman/"), ("/a/b/", "/a/b/")],
)
def test_base_url_normalized(given, expected):
    assert ExpmanTornado(base_url=given).base_url == expected


def test_experiments_folder_default(workdir):
    (workdir / "experiments").mkdir()
    assert initialized().store == "experiments"


# Errors at start


def test_no_store_error_mentions_demo(tmp_path):
    finished = run_command(tmp_path)
    assert finished.returncode == 2
    assert "./experiments" in finished.stderr
    assert "--demo" in finished.stderr
    assert "Traceback" not in finished.stderr


def test_missing_store_error(tmp_path):
    missing = str(tmp_path / "no-such-store")
    finished = run_command(tmp_path, missing)
    assert finished.returncode == 2
    assert missing in finished.stderr
    assert "does not exist" in finished.stderr
    assert "Traceback" not in finished.stderr


def test_port_in_use_error(tmp_path, real_store):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        finished = run_command(tmp_path, real_store, "--port", str(port))
    assert finished.returncode == 1
    assert "Cannot listen on 127.0.0.1 port %d" % port in finished.stderr
    assert "--port" in finished.stderr
    assert "Traceback" not in finished.stderr


def test_two_stores_error(tmp_path, real_store):
    finished = run_command(tmp_path, real_store, real_store)
    assert finished.returncode == 2
    assert "Only one store" in finished.stderr
    assert "Traceback" not in finished.stderr


# The server process


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_server_process_serves_and_stops(server_process, real_store, signum):
    port = free_port()
    server = server_process(real_store, "--port=%d" % port)

    assert server.url == "http://127.0.0.1:%d/" % port
    started_log = server.log()
    assert real_store in started_log
    assert re.search(r"\b1 experiments?\b", started_log), started_log
    assert re.search(r"\b3 runs\b", started_log), started_log
    assert [e["id"] for e in server.get_json("/api/experiments")] == ["vision"]

    assert server.stop(signum) == 0
    assert "Traceback" not in server.log()


def wait_for_log(server, pattern: str, timeout: float = 30) -> re.Match:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = re.search(pattern, server.log())
        if match:
            return match
        time.sleep(0.05)
    pytest.fail("the server did not log %r within %.0f s:\n%s" % (pattern, timeout, server.log()))


def test_summaries_read_at_start(server_process, real_store, tmp_path):
    server = server_process(real_store, "--port=%d" % free_port(), "--cache-dir=%s" % (tmp_path / "cache"))
    wait_for_log(server, r"Summaries of 3 runs ready after \d+\.\d s")
    assert len(server.get_json("/api/experiments/vision/runs")) == 3


def test_summaries_not_read_at_start_when_off(server_process, real_store):
    server = server_process(real_store, "--port=%d" % free_port(), "--ExpmanTornado.read_summaries_at_start=False")
    assert len(server.get_json("/api/experiments/vision/runs")) == 3
    assert server.stop() == 0
    assert "Summaries of" not in server.log()


def test_demo_writes_live_store(server_process, tmp_path):
    store = tmp_path / "demo-store"
    server = server_process("--demo", str(store), "--port=%d" % free_port())
    experiment = store / "demo-mnist"

    # Finished runs went through the logger's close, which writes vectors.parquet.
    statuses = {}
    for run_yaml in experiment.glob("*/run.yaml"):
        statuses[run_yaml.parent.name] = yaml.safe_load(run_yaml.read_text())["status"]
    finished = [name for name, status in statuses.items() if status == "FINISHED"]
    assert len(finished) >= 3, statuses
    for name in finished:
        assert (experiment / name / "vectors.parquet").is_file()
    running = [name for name, status in statuses.items() if status == "RUNNING"]
    assert len(running) == 1, statuses
    live = experiment / running[0]

    # The live run writes Arrow segments that grow, and the API counts more rows over time.
    run_path = "/api/experiments/demo-mnist/runs/%s" % running[0]
    first_rows = server.get_json(run_path)["rows"]
    first_bytes = sum(p.stat().st_size for p in live.glob("vectors-*.arrow"))
    deadline = time.monotonic() + 10
    rows, size = first_rows, first_bytes
    while (rows <= first_rows or size <= first_bytes) and time.monotonic() < deadline:
        time.sleep(0.2)
        rows = server.get_json(run_path)["rows"]
        size = sum(p.stat().st_size for p in live.glob("vectors-*.arrow"))
    assert rows > first_rows
    assert size > first_bytes

    # Stopping the server closes the live run, as the logger does at the end of training.
    assert server.stop(signal.SIGTERM) == 0
    assert "Traceback" not in server.log()
    assert yaml.safe_load((live / "run.yaml").read_text())["status"] == "FINISHED"
    assert pq.read_metadata(live / "vectors.parquet").num_rows >= rows
    assert not list(live.glob("vectors-*.arrow"))


# Base URL


@pytest.mark.gen_test
@pytest.mark.parametrize("server_config", [{"base_url": "/expman/"}])
async def test_base_url_mounts_api(http_client, base_url, server_config):
    response = await http_client.fetch(base_url + "/expman/api/experiments")
    assert [e["id"] for e in strict_json(response.body)] == ["vision"]
    run = "/expman/api/experiments/vision/runs/baseline"
    entries = strict_json((await http_client.fetch(base_url + run + "/artifacts")).body)
    assert all(entry["url"].startswith(run + "/") for entry in entries)
    notes = [entry["url"] for entry in entries if entry["path"] == "notes.txt"]
    assert (await http_client.fetch(base_url + notes[0])).body == b"hello\n"


@pytest.mark.gen_test
@pytest.mark.parametrize("server_config", [{"base_url": "/expman/"}])
@pytest.mark.parametrize("path", ["/expman/", "/expman/experiments/vision"])
async def test_base_url_mounts_page(http_client, base_url, server_config, path):
    response = await http_client.fetch(base_url + path)
    assert response.headers["Content-Type"].startswith("text/html")
    assert b'"/expman/"' in response.body


@pytest.mark.gen_test
@pytest.mark.parametrize("server_config", [{"base_url": "/expman/"}])
@pytest.mark.parametrize(
    "path", ["/expman/api/nope", "/expman/api", "/expman/api/experiments/vision/x"]
)
async def test_base_url_api_404_json(http_client, base_url, server_config, path):
    response = await http_client.fetch(base_url + path, raise_error=False)
    assert_api_error(response, 404)


@pytest.mark.gen_test
@pytest.mark.parametrize("server_config", [{"base_url": "/expman/"}])
async def test_base_url_redirects_bare_prefix(http_client, base_url, server_config):
    url = base_url + "/expman"
    response = await http_client.fetch(url, follow_redirects=False, raise_error=False)
    assert response.code in (301, 302)
    assert response.headers["Location"] == "/expman/"


@pytest.mark.gen_test
@pytest.mark.parametrize("server_config", [{"base_url": "/expman/"}])
@pytest.mark.parametrize("path", ["/api/experiments", "/"])
async def test_base_url_nothing_outside(http_client, base_url, server_config, path):
    response = await http_client.fetch(base_url + path, raise_error=False)
    assert response.code == 404
