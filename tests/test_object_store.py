"""A store on object storage (S3), served through the same store code as a local folder.

moto's S3 server runs in this process on 127.0.0.1, on a free port. Stores
are written by the real logger into a local folder and uploaded, so every
route can be compared with the same store served from the local copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import subprocess
import sys
import time
import urllib.request
import uuid

import httpx
import numpy as np
import pytest
from httpx_sse import aconnect_sse
from tornado.httpclient import AsyncHTTPClient
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port

from expman_tornado.app import ExpmanTornado
from expman_tornado.store import Store
from expman_tornado.store.filesystem import ObjectFilesystem, StoreUnavailable, check_root

from .conftest import assert_api_error, strict_json
from .stores import new_run, write_real_store

moto_server = pytest.importorskip("moto.server")
s3fs = pytest.importorskip("s3fs")

BUCKET = "expman-test"

#: Environment variables of the AWS SDKs that the tests set or clear.
AWS_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE")

#: Seconds between two listings of the served store.
LISTING_INTERVAL = 0.2

#: Bounds of every waiting loop in this module.
MAX_SECONDS = 30.0


@pytest.fixture(scope="session")
def s3_endpoint() -> str:
    """moto's S3 server on 127.0.0.1, for the whole session; return its URL."""
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    # moto logs every request at INFO through werkzeug.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    yield "http://%s:%d" % (host, port)
    server.stop()


@pytest.fixture(scope="module", autouse=True)
def aws_environment(s3_endpoint, tmp_path_factory):
    """Point the AWS SDK at moto with test credentials, for this module only."""
    with pytest.MonkeyPatch.context() as patch:
        for name in AWS_VARIABLES:
            patch.delenv(name, raising=False)
        missing = str(tmp_path_factory.mktemp("aws") / "none")
        patch.setenv("AWS_CONFIG_FILE", missing)
        patch.setenv("AWS_SHARED_CREDENTIALS_FILE", missing)
        patch.setenv("AWS_ACCESS_KEY_ID", "testing")
        patch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        patch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        patch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
        client = s3fs.S3FileSystem(skip_instance_cache=True)
        if not client.exists(BUCKET):
            client.mkdir(BUCKET)
        yield


def s3_client():
    return s3fs.S3FileSystem(skip_instance_cache=True)


def new_prefix(name: str) -> str:
    """Return a key prefix in the test bucket that no other test uses."""
    return "%s/%s-%s" % (BUCKET, name, uuid.uuid4().hex[:8])


def upload(local_root: str, prefix: str) -> str:
    """Copy a local store under a key prefix; return the store's URL."""
    s3_client().put(local_root.rstrip("/") + "/", prefix + "/", recursive=True)
    return "s3://" + prefix


def write_media_run(root: str) -> None:
    """Write run ``pictures`` of experiment ``vision``: histograms of two tags and two images."""
    run = new_run(root, "vision", "pictures")
    rng = np.random.default_rng(0)
    for step in range(4):
        run.log_vector({"loss": 1.0 / (step + 1)}, step=step)
        # One tag per step: the logger keeps one histogram row per step at close.
        run.log_histogram("weights" if step % 2 else "bias", rng.normal(size=100), step=step)
    run.log_image("samples", np.zeros((4, 6, 3), dtype=np.uint8), step=0)
    run.log_image("samples", np.full((2, 2), 255, dtype=np.uint8), step=1)
    run.close()


@pytest.fixture(scope="module")
def local_copy(tmp_path_factory, aws_environment) -> str:
    root = str(tmp_path_factory.mktemp("object-store"))
    write_real_store(root)
    write_media_run(root)
    return root


@pytest.fixture(scope="module")
def store_url(local_copy) -> str:
    return upload(local_copy, new_prefix("store"))


class Served:
    """Servers started for a test on its IOLoop, each with its own context; stopped at the end."""

    def __init__(self, io_loop):
        self.io_loop = io_loop
        self._stops = []
        #: The live hub of each server started with ``live``, in order.
        self.hubs = []

    async def start(self, store: str, live: bool = True, **config) -> str:
        """Serve ``store`` on a free port and return the base URL."""
        application = ExpmanTornado(store=store, poll_interval=LISTING_INTERVAL, **config)
        context = application.make_context()
        web_app = application.make_web_app(context)
        hub = None
        if live:
            hub = application.make_hub(context)
            await hub.start()
            self.hubs.append(hub)
        server = HTTPServer(web_app)
        sock, port = bind_unused_port()
        server.add_sockets([sock])
        self._stops.append((server, hub, context))
        return "http://127.0.0.1:%d" % port

    def stop(self) -> None:
        for server, hub, context in self._stops:
            server.stop()
            if hub is not None:
                hub.stop()
            context.executor.shutdown(wait=True)


@pytest.fixture
def served(io_loop):
    servers = Served(io_loop)
    yield servers
    servers.stop()


@pytest.fixture
def both(served, local_copy, store_url) -> tuple[str, str]:
    """Return the base URLs of the local copy's server and of the object store's server."""
    local = served.io_loop.run_sync(lambda: served.start(local_copy, live=False))
    return local, served.io_loop.run_sync(lambda: served.start(store_url))


async def fetch(url: str, **options):
    return await AsyncHTTPClient().fetch(url, raise_error=False, **options)


def without(value, *keys: str):
    """Return a JSON value with the given keys removed from every object in it (times of upload)."""
    if isinstance(value, list):
        return [without(item, *keys) for item in value]
    if isinstance(value, dict):
        return {key: without(item, *keys) for key, item in value.items() if key not in keys}
    return value


RUN = "/api/experiments/vision/runs/baseline"

#: Routes whose responses must be the same for both copies, and the keys that differ by nature:
#: ``last_activity`` and ``modified`` are upload times on object storage.
SAME_ROUTES = [
    ("/api/experiments", ("last_activity",)),
    ("/api/experiments/vision/runs", ()),
    ("/api/experiments/vision/runs?metrics=loss&q=status%3DFINISHED", ()),
    (RUN, ()),
    (RUN + "/metrics", ()),
    (RUN + "/metrics?format=columnar&max_points=20", ()),
    (RUN + "/artifacts", ("modified",)),
    ("/api/experiments/vision/runs/nan/metrics", ()),
    ("/api/experiments/vision/runs/failed", ()),
    ("/api/experiments/vision/runs/pictures/histograms?max_steps=2", ()),
    ("/api/experiments/vision/runs/pictures/media", ()),
    ("/api/experiments/vision/runs/pictures/metrics?format=csv", ()),
    ("/api/stats", ()),
]


@pytest.mark.gen_test(timeout=60)
@pytest.mark.parametrize("route, differing", SAME_ROUTES)
async def test_route_same_as_local_copy(both, route, differing):
    local, remote = both
    expected = await fetch(local + route)
    answered = await fetch(remote + route)
    assert expected.code == 200, expected.body[:300]
    assert answered.code == 200, answered.body[:300]
    if expected.headers["Content-Type"].startswith("application/json"):
        assert without(strict_json(answered.body), *differing) == without(strict_json(expected.body), *differing)
    else:
        assert answered.body == expected.body


@pytest.mark.gen_test(timeout=60)
@pytest.mark.parametrize("route", ["/logs/run.log", "/logs/run.log?tail=1", "/files/run.yaml",
                                   "/artifacts/plots/curve.csv", "/files/vectors.parquet"])
async def test_file_same_as_local_copy(both, route):
    local, remote = both
    expected = await fetch(local + RUN + route)
    answered = await fetch(remote + RUN + route)
    assert expected.code == 200
    assert answered.code == 200
    assert answered.body == expected.body
    assert answered.headers["Content-Type"] == expected.headers["Content-Type"]


@pytest.mark.gen_test(timeout=60)
async def test_missing_names_same_as_local(both):
    local, remote = both
    for route in ("/api/experiments/nope/runs", "/api/experiments/vision/runs/nope",
                  RUN + "/artifacts/nope.txt", RUN + "/logs/console.log", RUN + "/files/artifacts"):
        assert_api_error(await fetch(local + route), 404)
        assert_api_error(await fetch(remote + route), 404)


@pytest.mark.gen_test(timeout=60)
async def test_artifact_range_and_etag(served, store_url):
    remote = await served.start(store_url, live=False)
    url = remote + RUN + "/artifacts/notes.txt"
    whole = await fetch(url)
    assert whole.code == 200
    assert whole.body == b"hello\n"
    assert whole.headers["Content-Type"] == "text/plain; charset=UTF-8"
    assert whole.headers["Accept-Ranges"] == "bytes"
    assert whole.headers["Content-Security-Policy"] == "sandbox"
    etag = whole.headers["Etag"]
    assert etag.startswith('"')

    unchanged = await fetch(url, headers={"If-None-Match": etag})
    assert unchanged.code == 304

    part = await fetch(url, headers={"Range": "bytes=1-3"})
    assert part.code == 206
    assert part.body == b"ell"
    assert part.headers["Content-Range"] == "bytes 1-3/6"

    suffix = await fetch(url, headers={"Range": "bytes=-2"})
    assert suffix.code == 206
    assert suffix.body == b"o\n"

    outside = await fetch(url, headers={"Range": "bytes=100-"})
    assert_api_error(outside, 416, "6 bytes")

    head = await fetch(url, method="HEAD")
    assert head.code == 200
    assert head.headers["Content-Length"] == "6"
    assert head.body == b""

    download = await fetch(url + "?download=1")
    assert "attachment" in download.headers["Content-Disposition"]


@pytest.mark.gen_test(timeout=60)
async def test_artifact_read_in_chunks(served, store_url, monkeypatch):
    from expman_tornado.handlers.artifacts import RunFileHandler

    monkeypatch.setattr(RunFileHandler, "object_chunk_bytes", 2)
    remote = await served.start(store_url, live=False)
    answered = await fetch(remote + RUN + "/artifacts/plots/curve.csv", headers={"Range": "bytes=1-6"})
    assert answered.code == 206
    assert answered.body == b",b\n1,2"


@pytest.mark.gen_test(timeout=60)
async def test_etag_changes_with_object(served, local_copy):
    url = upload(local_copy, new_prefix("etag"))
    remote = await served.start(url, live=False)
    artifact = remote + RUN + "/artifacts/notes.txt"
    before = (await fetch(artifact)).headers["Etag"]
    s3_client().pipe(url[len("s3://"):] + "/vision/baseline/artifacts/notes.txt", b"hello again\n")
    after = await fetch(artifact, headers={"If-None-Match": before})
    assert after.code == 200
    assert after.body == b"hello again\n"
    assert after.headers["Etag"] != before


XSRF = {"Cookie": "_xsrf=abcd", "X-XSRFToken": "abcd"}


@pytest.mark.gen_test(timeout=60)
async def test_patch_writes_yaml_object(served, local_copy):
    url = upload(local_copy, new_prefix("patch"))
    remote = await served.start(url)
    answered = await fetch(remote + RUN, method="PATCH", headers=XSRF,
                           body=json.dumps({"tags": ["edited"], "description": "on s3"}))
    assert answered.code == 200, answered.body
    assert strict_json(answered.body)["tags"] == ["edited"]

    written = s3_client().cat(url[len("s3://"):] + "/vision/baseline/run.yaml").decode()
    assert "edited" in written
    assert "on s3" in written
    assert "status: FINISHED" in written  # Fields the PATCH did not name are kept.
    listed = strict_json((await fetch(remote + "/api/experiments/vision/runs")).body)
    assert {run["id"]: run["tags"] for run in listed}["baseline"] == ["edited"]

    experiment = await fetch(remote + "/api/experiments/vision", method="PATCH", headers=XSRF,
                             body=json.dumps({"display_name": "Vision on S3"}))
    assert strict_json(experiment.body)["display_name"] == "Vision on S3"


@pytest.mark.gen_test(timeout=60)
async def test_notebook_spawn_not_available(served, store_url):
    remote = await served.start(store_url, live=False)
    answered = await fetch(remote + "/api/jupyter/spawn", method="POST", headers=XSRF,
                           body=json.dumps({"experiment": "vision", "run": "baseline"}))
    assert_api_error(answered, 501, "object storage")


@pytest.mark.gen_test(timeout=60)
async def test_server_reports_listing_watcher(served, store_url):
    remote = await served.start(store_url)
    info = strict_json((await fetch(remote + "/api/server")).body)
    assert info["watcher"] == "listing"
    assert info["store"] == store_url
    assert info["jupyter"] is False  # The dashboard hides its notebook button.


# Live updates: a run that keeps growing, uploaded as the logger writes it.


class Uploader:
    """Mirror a local store under a key prefix: upload new and changed files, delete removed ones."""

    def __init__(self, local_root: str, prefix: str):
        self.local_root = local_root
        self.prefix = prefix
        self.client = s3_client()
        self._sent: dict[str, tuple[int, int]] = {}

    def sync(self) -> None:
        found = {}
        for folder, _, names in os.walk(self.local_root):
            for name in names:
                path = os.path.join(folder, name)
                try:
                    stat = os.stat(path)
                except FileNotFoundError:
                    continue  # Deleted by the logger meanwhile.
                found[os.path.relpath(path, self.local_root)] = (stat.st_size, stat.st_mtime_ns)
        for relative, version in sorted(found.items()):
            if self._sent.get(relative) != version:
                with contextlib.suppress(FileNotFoundError):
                    with open(os.path.join(self.local_root, relative), "rb") as f:
                        self.client.pipe(self.prefix + "/" + relative, f.read())
                self._sent[relative] = version
        for relative in set(self._sent) - set(found):
            self.client.rm(self.prefix + "/" + relative)
            del self._sent[relative]


class EventQueue:
    """The events of an SSE stream, read in a task so that waiting for one can time out."""

    def __init__(self, source):
        self.queue: asyncio.Queue = asyncio.Queue()
        self.task = asyncio.ensure_future(self._read(source))

    async def _read(self, source) -> None:
        try:
            async for event in source.aiter_sse():
                if event.event == "message" and not event.data:
                    continue  # A heartbeat comment.
                await self.queue.put(event)
        except (httpx.HTTPError, asyncio.CancelledError):
            pass
        finally:
            await self.queue.put(None)

    async def next(self):
        event = await asyncio.wait_for(self.queue.get(), MAX_SECONDS)
        assert event is not None, "the stream ended"
        return event


async def wait_for_run(base_url: str, experiment: str, run: str) -> None:
    """Wait until the server lists a run (the next listing after its upload)."""
    deadline = time.monotonic() + MAX_SECONDS
    while (await fetch("%s/api/experiments/%s/runs/%s" % (base_url, experiment, run))).code != 200:
        assert time.monotonic() < deadline, "run %s/%s never appeared" % (experiment, run)
        await asyncio.sleep(LISTING_INTERVAL)


async def wait_for_listings(watcher, passes: int) -> None:
    """Wait until the listing watcher has completed ``passes`` listings."""
    deadline = time.monotonic() + MAX_SECONDS
    while watcher.passes < passes:
        assert time.monotonic() < deadline, "the listing watcher made no listing"
        await asyncio.sleep(LISTING_INTERVAL / 4)


async def in_thread(function, *args):
    return await asyncio.get_running_loop().run_in_executor(None, function, *args)


#: Steps of the growing run: step 0, then five rounds of 40.
STEPS = 201


@pytest.mark.gen_test(timeout=90)
async def test_growing_run_streamed_once(served, tmp_path):
    """New segments uploaded while the run is served reach the stream, each row once.

    The logger writes steps in rounds; after each round the local folder is
    mirrored (new segments, and the last one again with more rows). At the end
    the run closes, its segments become vectors.parquet, and the stream must
    still have every step exactly once.
    """
    local_root = str(tmp_path / "store")
    prefix = new_prefix("live")
    run = new_run(local_root, "live", "train", flush_interval_ms=20, flush_interval_rows=25)
    uploader = Uploader(local_root, prefix)
    run.log_vector({"loss": 1.0}, step=0)
    await asyncio.sleep(0.2)
    await in_thread(uploader.sync)
    base_url = await served.start("s3://" + prefix)
    await wait_for_run(base_url, "live", "train")

    steps, statuses, lines = [], [], []
    url = base_url + "/api/experiments/live/runs/train/live?since_step=-1"
    async with httpx.AsyncClient(timeout=MAX_SECONDS) as client:
        async with aconnect_sse(client, "GET", url) as source:
            events = EventQueue(source)
            try:
                for start in range(1, STEPS, 40):
                    for step in range(start, start + 40):
                        run.log_vector({"loss": 1.0 / (step + 1), "acc": step / STEPS}, step=step)
                    run.info("round from step %d" % start)
                    await asyncio.sleep(0.15)
                    await in_thread(uploader.sync)
                run.close()
                await in_thread(uploader.sync)
                while not statuses or steps[-1:] != [STEPS - 1]:
                    event = await events.next()
                    if event.event == "MetricsUpdated":
                        steps.extend(row["step"] for row in json.loads(event.data)["rows"])
                    elif event.event == "StatusChanged":
                        statuses.append(json.loads(event.data)["status"])
                    elif event.event == "LogMessage" and json.loads(event.data)["file"] == "run.log":
                        lines.extend(json.loads(event.data)["lines"])
                while len([line for line in lines if "round from step" in line]) < 5:
                    event = await events.next()
                    if event.event == "LogMessage" and json.loads(event.data)["file"] == "run.log":
                        lines.extend(json.loads(event.data)["lines"])
            finally:
                events.task.cancel()
    assert steps == list(range(STEPS))
    # Each upload of run.log is a new object; only its new lines are sent.
    rounds = [line.split("round from step ")[1] for line in lines if "round from step" in line]
    assert rounds == [str(start) for start in range(1, STEPS, 40)]
    assert statuses[-1] == "FINISHED"
    assert not any(name.endswith(".arrow") for name in s3_client().ls(prefix + "/live/train"))


@pytest.mark.gen_test(timeout=60)
async def test_new_run_announced(served, local_copy):
    url = upload(local_copy, new_prefix("announce"))
    remote = await served.start(url)
    created = []
    async with httpx.AsyncClient(timeout=MAX_SECONDS) as client:
        async with aconnect_sse(client, "GET", remote + "/api/live") as source:
            events = EventQueue(source)
            try:
                await wait_for_listings(served.hubs[-1].watcher, 1)  # The first listing is the baseline.
                s3_client().pipe(url[len("s3://"):] + "/audio/first/run.yaml", b"name: first\nstatus: RUNNING\n")
                while len(created) < 2:
                    event = await events.next()
                    if event.event in ("ExperimentCreated", "RunCreated"):
                        created.append((event.event, json.loads(event.data)))
            finally:
                events.task.cancel()
    assert ("ExperimentCreated", {"experiment": "audio"}) in created
    assert ("RunCreated", {"experiment": "audio", "run": "first"}) in created


# Credentials, endpoint and start-up errors


def test_storage_options_give_endpoint(store_url, s3_endpoint, monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    options = {"endpoint_url": s3_endpoint, "key": "testing", "secret": "testing"}
    store = Store(store_url, storage_options=options)
    assert store.experiment_ids() == ["vision"]
    assert store.run_ids("vision") == ["baseline", "failed", "nan", "pictures"]


def test_missing_bucket_error():
    with pytest.raises(StoreUnavailable, match="not found") as raised:
        check_root("s3://no-such-bucket-here/store")
    assert "s3://no-such-bucket-here/store" in str(raised.value)


@contextlib.contextmanager
def credentials_checked(endpoint: str):
    """Make moto check credentials (it accepts any by default) while the block runs."""

    def reset_auth(count: bytes) -> None:
        request = urllib.request.Request(endpoint + "/moto-api/reset-auth", data=count, method="POST",
                                         headers={"Content-Type": "text/plain"})
        with urllib.request.urlopen(request, timeout=10) as reply:
            assert reply.status == 200

    reset_auth(b"0")
    try:
        yield
    finally:
        reset_auth(b"inf")


def test_refused_credentials_error(store_url, s3_endpoint):
    with credentials_checked(s3_endpoint):
        with pytest.raises(StoreUnavailable, match="access denied") as raised:
            check_root(store_url)
    assert "AWS_ACCESS_KEY_ID" in str(raised.value)


def expman_command() -> list[str]:
    script = os.path.join(os.path.dirname(sys.executable), "expman-tornado")
    return [script] if os.path.isfile(script) else [sys.executable, "-m", "expman_tornado"]


@pytest.mark.parametrize("url, message", [
    ("s3://no-such-bucket-here/store", "not found"),
    ("s3://%s/store" % BUCKET, "access denied"),
])
def test_startup_error_without_traceback(tmp_path, s3_endpoint, url, message):
    environment = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter-config")}
    environment.pop("JUPYTER_CONFIG_PATH", None)
    with credentials_checked(s3_endpoint) if message == "access denied" else contextlib.nullcontext():
        finished = subprocess.run(expman_command() + [url, "--port=0"], cwd=tmp_path, env=environment,
                                  stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert finished.returncode == 2, finished.stderr[-2000:]
    assert message in finished.stderr
    assert url in finished.stderr
    assert "Traceback" not in finished.stderr


def test_listing_identity_follows_etag(local_copy):
    url = upload(local_copy, new_prefix("identity"))
    filesystem = ObjectFilesystem(url)
    path = url + "/vision/baseline/artifacts/notes.txt"
    before = filesystem.refresh()[path]
    s3_client().pipe(path[len("s3://"):], b"HELLO\n")  # Same size, new content.
    after = filesystem.refresh()[path]
    assert after.size == before.size
    assert after != before


def test_summary_index_reused_on_object_storage(local_copy, tmp_path, monkeypatch):
    """Summaries of closed runs are kept by ETag between starts, and a changed object is read again."""
    url = upload(local_copy, new_prefix("index"))
    cache_dir = str(tmp_path / "cache")
    first = json.loads(Store(url, cache_dir=cache_dir).runs_json("vision"))
    built = []
    original = Store._run_summary
    monkeypatch.setattr(Store, "_run_summary",
                        lambda self, experiment, run: built.append(run) or original(self, experiment, run))
    assert json.loads(Store(url, cache_dir=cache_dir).runs_json("vision")) == first
    assert built == []

    s3_client().pipe(url[len("s3://"):] + "/vision/nan/config.yaml", b"lr: 0.5\n")
    runs = json.loads(Store(url, cache_dir=cache_dir).runs_json("vision"))
    assert built == ["nan"]
    assert {run["id"]: run["params"] for run in runs}["nan"] == {"lr": 0.5}


def test_large_parquet_read_in_ranges(local_copy, store_url, monkeypatch):
    """A parquet file above the small-file size is read in place by byte ranges, not fetched whole."""
    from expman_tornado.store import tables

    monkeypatch.setattr(tables, "SMALL_PARQUET_BYTES", 0)
    expected = Store(local_copy).metrics_table("vision", "baseline")
    assert Store(store_url).metrics_table("vision", "baseline").equals(expected)


@pytest.mark.gen_test(timeout=90)
async def test_endpoint_gone_is_json_503(served, local_copy, monkeypatch, caplog):
    """Storage that stops responding while served gives a JSON 503 that names it, not a 500."""
    own = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    own.start()
    try:
        host, port = own.get_host_and_port()
        endpoint = "http://%s:%d" % (host, port)
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        client = s3fs.S3FileSystem(skip_instance_cache=True)
        client.mkdir("gone")
        client.put(local_copy.rstrip("/") + "/", "gone/store/", recursive=True)
        remote = await served.start("s3://gone/store", live=False)
        assert (await fetch(remote + "/api/experiments/vision/runs")).code == 200
    finally:
        own.stop()

    requests = [(RUN + "/logs/run.log", "GET", None), (RUN + "/artifacts/notes.txt", "GET", None),
                (RUN, "PATCH", json.dumps({"tags": ["x"]}))]
    for route, method, body in requests:
        answered = await fetch(remote + route, method=method, body=body, headers=XSRF)
        error = assert_api_error(answered, 503, mentions="Cannot reach s3://gone/store")
        assert answered.headers["Retry-After"], route
        assert "Traceback" not in error["message"], route
    assert not [record for record in caplog.records if record.exc_info], "a traceback was logged"


@pytest.mark.gen_test(timeout=60)
async def test_folder_marker_object_hides_no_new_run(served, local_copy):
    """An object whose key is an experiment folder's (a folder marker) does not freeze its runs listing."""
    prefix = new_prefix("marker")
    url = upload(local_copy, prefix)
    remote = await served.start(url)
    runs_url = remote + "/api/experiments/vision/runs"
    assert len(strict_json((await fetch(runs_url)).body)) == 4
    client = s3_client()
    client.pipe(prefix + "/vision", b"")
    await wait_for_listings(served.hubs[0].watcher, served.hubs[0].watcher.passes + 2)
    assert len(strict_json((await fetch(runs_url)).body)) == 4
    client.pipe(prefix + "/vision/third/run.yaml", b"name: third\nstatus: FINISHED\n")
    deadline = time.monotonic() + MAX_SECONDS
    while "third" not in [run["id"] for run in strict_json((await fetch(runs_url)).body)]:
        assert time.monotonic() < deadline, "the new run never appeared in the runs listing"
        await asyncio.sleep(LISTING_INTERVAL)
