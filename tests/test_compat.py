"""The Rust expman-rs server's routes (the ``compat`` group), on stores written by the real logger."""

from __future__ import annotations

import asyncio
import json
import os
import shutil

import httpx
import pytest

from .conftest import assert_api_error, strict_json
from .stores import new_run, write_real_store, write_text
from .test_live import EventReader, stream

RUN = "/api/experiments/vision/runs/baseline"
CONTENT = RUN + "/artifacts/content"

#: The keys of the Rust server's run metadata (expman-rs 1.3.0).
RUST_RUN_METADATA_KEYS = {
    "id", "name", "experiment", "status", "group", "rank", "started_at", "finished_at",
    "heartbeat_at", "duration_secs", "description", "tags", "scalars", "vectors", "language",
    "env_path",
}  # fmt: skip


@pytest.fixture
def store_root(tmp_path) -> str:
    """A fresh store per test, since some tests add files to it."""
    root = str(tmp_path / "store")
    write_real_store(root)
    return root


@pytest.fixture
def server_config() -> dict:
    return {"heartbeat_interval": 0.5}


def url_of(base_url: str, path: str) -> str:
    return base_url.replace("localhost", "127.0.0.1") + path


async def get(http_client, base_url: str, path: str, **kwargs):
    return await http_client.fetch(base_url + path, raise_error=False, **kwargs)


# Metadata and config


@pytest.mark.gen_test
async def test_run_metadata_has_rust_keys(http_client, base_url):
    metadata = strict_json((await get(http_client, base_url, RUN + "/metadata")).body)
    assert set(metadata) == RUST_RUN_METADATA_KEYS
    assert metadata["id"] == "baseline"
    assert metadata["status"] == "FINISHED"
    assert metadata["tags"] == ["baseline"]
    assert metadata["scalars"] == {"best_acc": 0.75}


@pytest.mark.gen_test
async def test_experiment_metadata_fields(http_client, base_url):
    response = await get(http_client, base_url, "/api/experiments/vision/metadata")
    assert strict_json(response.body) == {
        "display_name": "vision", "description": None, "tags": [], "project": None,
    }


@pytest.mark.gen_test
async def test_config_as_written(http_client, base_url):
    config = strict_json((await get(http_client, base_url, RUN + "/config")).body)
    assert config == {"lr": 0.001, "batch_size": 32, "optimizer": "{'name': 'adamw', 'wd': 0.01}"}


@pytest.mark.gen_test
async def test_config_without_file_is_empty(http_client, base_url):
    response = await get(http_client, base_url, "/api/experiments/vision/runs/nan/config")
    assert strict_json(response.body) == {}


@pytest.mark.gen_test
@pytest.mark.parametrize("path", [
    "/api/experiments/vision/runs/nope/metadata",
    "/api/experiments/vision/runs/nope/config",
    "/api/experiments/nope/metadata",
    "/api/experiments/vision/runs/nope/artifacts/content?path=notes.txt",
    "/api/experiments/vision/runs/nope/log/stream",
    "/api/run/vision/nope/stream/vectors",
])
async def test_unknown_run_json_404(http_client, base_url, path):
    assert_api_error(await get(http_client, base_url, path), 404, mentions="nope")


@pytest.mark.gen_test
@pytest.mark.parametrize("path", [
    "/api/experiments/vision/runs/..%5Cx/metadata",
    "/api/run/vision/%00/stream/vectors",
])
async def test_invalid_name_json_400(http_client, base_url, path):
    assert_api_error(await get(http_client, base_url, path), 400)


# Artifact content


@pytest.mark.gen_test
@pytest.mark.parametrize("path, body", [
    ("notes.txt", b"hello\n"),
    ("plots/curve.csv", b"a,b\n1,2\n"),
    ("artifacts/notes.txt", b"hello\n"),
])
async def test_content_by_listing_path(http_client, base_url, path, body):
    response = await get(http_client, base_url, CONTENT + "?path=" + path)
    assert response.code == 200
    assert response.body == body
    assert response.headers["Content-Security-Policy"] == "sandbox"


@pytest.mark.gen_test
async def test_content_run_file(http_client, base_url, store_root):
    response = await get(http_client, base_url, CONTENT + "?path=run.yaml")
    with open(os.path.join(store_root, "vision", "baseline", "run.yaml"), "rb") as f:
        assert response.body == f.read()
    assert response.headers["Content-Type"].startswith("application/yaml")


@pytest.mark.gen_test
async def test_content_artifact_before_run_file(http_client, base_url, store_root):
    write_text(os.path.join(store_root, "vision", "baseline", "artifacts", "run.yaml"), "copy\n")
    response = await get(http_client, base_url, CONTENT + "?path=run.yaml")
    assert response.body == b"copy\n"


@pytest.mark.gen_test
async def test_content_every_listed_path(http_client, base_url):
    listing = strict_json((await get(http_client, base_url, RUN + "/artifacts")).body)
    assert listing
    for entry in listing:
        response = await get(http_client, base_url, CONTENT + "?path=" + entry["path"])
        assert response.code == 200, entry["path"]
        assert len(response.body) == entry["size"], entry["path"]


@pytest.mark.gen_test
@pytest.mark.parametrize("query, status", [
    ("?path=", 400),
    ("?path=../run.yaml", 400),
    ("?path=/etc/passwd", 400),
    ("?path=plots/../notes.txt", 400),
    ("?path=a%5Cb", 400),
    ("?path=plots", 404),
    ("?path=missing.txt", 404),
    ("?path=outside.txt", 403),
    ("?path=linked/secret.txt", 403),
])
async def test_content_rejects_bad_paths(http_client, base_url, store_root, tmp_path, query, status):
    secret = tmp_path / "secret.txt"
    secret.write_text("SECRET-OUTSIDE")
    artifacts = os.path.join(store_root, "vision", "baseline", "artifacts")
    os.symlink(str(secret), os.path.join(artifacts, "outside.txt"))
    os.symlink(str(tmp_path), os.path.join(artifacts, "linked"))
    response = await get(http_client, base_url, CONTENT + query)
    assert_api_error(response, status)
    assert b"SECRET-OUTSIDE" not in response.body


@pytest.mark.gen_test
async def test_content_without_path_is_file(http_client, base_url, store_root):
    missing = await get(http_client, base_url, CONTENT)
    assert_api_error(missing, 404, mentions="content")
    write_text(os.path.join(store_root, "vision", "baseline", "artifacts", "content"), "a file\n")
    response = await get(http_client, base_url, CONTENT)
    assert response.body == b"a file\n"


@pytest.mark.gen_test
async def test_content_head_range_download(http_client, base_url):
    head = await get(http_client, base_url, CONTENT + "?path=notes.txt", method="HEAD")
    assert head.code == 200
    assert head.headers["Content-Length"] == "6"
    part = await get(http_client, base_url, CONTENT + "?path=notes.txt",
                     headers={"Range": "bytes=0-1"})
    assert part.code == 206
    assert part.body == b"he"
    download = await get(http_client, base_url, CONTENT + "?path=plots/curve.csv&download=1")
    assert 'filename="curve.csv"' in download.headers["Content-Disposition"]


# Disabling the group


class TestDisabled:
    @pytest.fixture
    def server_config(self) -> dict:
        return {"disabled_handler_groups": ["compat"]}

    @pytest.mark.gen_test
    @pytest.mark.parametrize("path", [
        RUN + "/metadata",
        RUN + "/config",
        "/api/experiments/vision/metadata",
        RUN + "/log/stream",
        "/api/run/vision/baseline/stream/vectors",
    ])
    async def test_routes_json_404(self, http_client, base_url, path):
        assert_api_error(await get(http_client, base_url, path), 404)

    @pytest.mark.gen_test
    async def test_content_is_artifact_route(self, http_client, base_url, store_root):
        response = await get(http_client, base_url, CONTENT + "?path=notes.txt")
        assert_api_error(response, 404, mentions="'content'")
        write_text(os.path.join(store_root, "vision", "baseline", "artifacts", "content"), "file\n")
        response = await get(http_client, base_url, CONTENT + "?path=notes.txt")
        assert response.body == b"file\n"

    @pytest.mark.gen_test
    async def test_other_groups_still_served(self, http_client, base_url):
        response = await get(http_client, base_url, RUN + "/artifacts/notes.txt")
        assert response.body == b"hello\n"


class TestLiveOff:
    @pytest.fixture
    def server_config(self) -> dict:
        return {"disabled_handler_groups": ["live"]}

    @pytest.fixture
    def app(self, app):
        """The application as ``start`` builds it with ``live`` disabled: no hub."""
        app.settings["expman"].extra.pop("hub")
        return app

    @pytest.mark.gen_test
    @pytest.mark.parametrize("path", [RUN + "/log/stream", "/api/run/vision/baseline/stream/vectors"])
    async def test_streams_501(self, http_client, base_url, path):
        assert_api_error(await get(http_client, base_url, path), 501, mentions="live")


# Streams


async def data_until(events: EventReader, done, timeout: float = 10.0) -> list:
    """Collect events until ``done(events so far)`` is true."""
    seen = []
    while not done(seen):
        seen.append(await events.next(timeout))
    return seen


def rows_of(events) -> list[int]:
    return [row["step"] for event in events for row in json.loads(event.data)]


@pytest.mark.gen_test(timeout=60)
async def test_vectors_stream_starts_with_all_rows(http_server, base_url, store_root):
    log_size = os.path.getsize(os.path.join(store_root, "vision", "baseline", "run.log"))
    url = url_of(base_url, "/api/run/vision/baseline/stream/vectors")
    async with httpx.AsyncClient(timeout=30) as client:
        async with stream(client, url) as events:
            first = await events.next()
    assert first.event == "message"
    assert [row["step"] for row in json.loads(first.data)] == list(range(200))
    assert first.id == "m200.r%d.c0" % log_size


@pytest.mark.gen_test(timeout=60)
async def test_vectors_stream_live_rows_once(http_server, base_url, store_root):
    run = new_run(store_root, "vision", "train", flush_interval_ms=50, flush_interval_rows=10)
    for step in range(5):
        run.log_vector({"loss": 1.0 / (step + 1)}, step=step)
    await asyncio.sleep(0.5)
    url = url_of(base_url, "/api/run/vision/train/stream/vectors")
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            async with stream(client, url) as events:
                seen = await data_until(events, lambda got: rows_of(got)[-1:] == [4])
                for step in range(5, 120):
                    run.log_vector({"loss": 1.0 / (step + 1)}, step=step)
                seen += await data_until(events, lambda got: rows_of(seen + got)[-1:] == [119])
    finally:
        run.close()
    assert rows_of(seen) == list(range(120))
    assert all(event.event == "message" for event in seen)


@pytest.mark.gen_test(timeout=60)
async def test_vectors_stream_resumes(http_server, base_url, store_root):
    run = new_run(store_root, "vision", "resume", flush_interval_ms=50, flush_interval_rows=10)
    url = url_of(base_url, "/api/run/vision/resume/stream/vectors")
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            for step in range(30):
                run.log_vector({"loss": float(step)}, step=step)
            await asyncio.sleep(0.5)
            async with stream(client, url) as events:
                seen = await data_until(events, lambda got: rows_of(got)[-1:] == [29])
            last_id = seen[-1].id
            for step in range(30, 60):
                run.log_vector({"loss": float(step)}, step=step)
            await asyncio.sleep(0.5)
            async with stream(client, url, {"Last-Event-ID": last_id}) as events:
                resumed = await data_until(events, lambda got: rows_of(got)[-1:] == [59])
    finally:
        run.close()
    assert rows_of(resumed) == list(range(30, 60))


@pytest.mark.gen_test(timeout=60)
async def test_vectors_stream_ends_when_deleted(http_server, base_url, store_root):
    url = url_of(base_url, "/api/run/vision/nan/stream/vectors")
    async with httpx.AsyncClient(timeout=30) as client:
        async with stream(client, url) as events:
            first = await events.next()
            shutil.rmtree(os.path.join(store_root, "vision", "nan"))
            with pytest.raises(StopAsyncIteration):
                while True:
                    await events.next()
    # NaN and ±Inf arrive as null, so the data is valid JSON.
    assert [row["loss"] for row in strict_json(first.data.encode())] == [1.0, None, None, 0.5, None]


@pytest.mark.gen_test(timeout=60)
async def test_log_stream_whole_file_then_lines(http_server, base_url, store_root):
    run = new_run(store_root, "vision", "logs", flush_interval_ms=50)
    run.info("first line")
    run.info("second line")
    await asyncio.sleep(0.5)
    url = url_of(base_url, "/api/experiments/vision/runs/logs/log/stream")
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            async with stream(client, url) as events:
                first = await events.next()
                run.info("third line")
                later = await events.next()
    finally:
        run.close()
    assert first.event == "message"
    lines = first.data.split("\n")
    assert [line.rsplit("] ", 1)[-1] for line in lines[:-1]] == ["first line", "second line"]
    assert lines[-1] == ""  # The data keeps the final line end, as the Rust server's does.
    assert later.data.endswith("third line\n")


@pytest.mark.gen_test(timeout=60)
async def test_log_stream_console_and_resume(http_server, base_url, store_root):
    folder = os.path.join(store_root, "vision", "baseline")
    write_text(os.path.join(folder, "console.log"), "epoch 1\rprogress\nepoch 2\n")
    url = url_of(base_url, RUN + "/log/stream?file=console.log")
    async with httpx.AsyncClient(timeout=30) as client:
        async with stream(client, url) as events:
            first = await events.next()
        with open(os.path.join(folder, "console.log"), "a") as f:
            f.write("epoch 3\n")
        async with stream(client, url, {"Last-Event-ID": first.id}) as events:
            resumed = await events.next()
    assert first.data == "epoch 1\nprogress\nepoch 2\n"
    assert resumed.data == "epoch 3\n"


@pytest.mark.gen_test
@pytest.mark.parametrize("name", ["run.yaml", "..%2Frun.yaml", "vectors.parquet"])
async def test_log_stream_other_file_404(http_client, base_url, name):
    response = await get(http_client, base_url, RUN + "/log/stream?file=" + name)
    assert_api_error(response, 404, mentions="run.log, console.log")
