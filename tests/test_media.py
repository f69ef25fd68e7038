"""Media: ``GET …/runs/:run/media`` on runs written by the real logger and by hand."""

from __future__ import annotations

import io
import json
import os

import matplotlib
import numpy as np
import pytest
from PIL import Image

from expman_tornado.store import Store
from expman_tornado.store.media import MediaLog

from .conftest import assert_api_error, strict_json
from .stores import make_run, new_run, write_text

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 (the backend is chosen first)

EXPERIMENT = "media"

#: Bytes that start like a WAV file: the logger stores audio bytes as given, unchecked.
WAV = b"RIFF\x24\x00\x00\x00WAVEfmt "


def write_media_store(root: str) -> None:
    """Write run ``pictures`` (images, a figure, audio) and run ``plain`` (no media)."""
    run = new_run(root, EXPERIMENT, "pictures")
    run.log_image("samples", np.zeros((4, 6, 3), dtype=np.uint8), step=0)
    run.log_image("samples", Image.new("RGB", (3, 3), "red"), step=1)
    figure = plt.figure(figsize=(1, 1))
    plt.plot([0, 1], [1, 0])
    run.log_figure("curve", figure, step=2)
    plt.close(figure)
    run.log_audio("speech", WAV, step=3)
    run.log_image("my img/x", np.full((2, 2), 255, dtype=np.uint8), step=5)
    run.close()

    run = new_run(root, EXPERIMENT, "plain")
    run.log_vector({"loss": 1.0}, step=0)
    run.close()


@pytest.fixture(scope="module")
def media_store(tmp_path_factory) -> str:
    root = str(tmp_path_factory.mktemp("media"))
    write_media_store(root)
    return root


@pytest.fixture
def store_root(media_store) -> str:
    return media_store


def url(run: str, query: str = "") -> str:
    return "/api/experiments/%s/runs/%s/media%s" % (EXPERIMENT, run, query)


async def get_json(http_client, base_url, path):
    return strict_json((await http_client.fetch(base_url + path)).body)


@pytest.mark.gen_test
async def test_media_entries(http_client, base_url, media_store):
    entries = await get_json(http_client, base_url, url("pictures"))
    assert [(e["tag"], e["step"]) for e in entries] == [
        ("samples", 0), ("samples", 1), ("curve", 2), ("speech", 3), ("my img/x", 5)]
    for entry in entries:
        assert list(entry) == ["tag", "step", "file", "url", "mime", "bytes", "logged_at"]
        assert entry["file"].startswith("media/")
        assert entry["url"] == "/api/experiments/media/runs/pictures/files/" + entry["file"]
        path = os.path.join(media_store, EXPERIMENT, "pictures", entry["file"])
        assert entry["bytes"] == os.path.getsize(path)
        assert entry["logged_at"].startswith("20")
    assert [e["mime"] for e in entries if e["tag"] != "speech"] == ["image/png"] * 4
    assert entries[3]["mime"].startswith("audio/")


@pytest.mark.gen_test
async def test_media_url_serves_file(http_client, base_url, media_store):
    entries = await get_json(http_client, base_url, url("pictures", "?tag=samples"))
    response = await http_client.fetch(base_url + entries[1]["url"])
    assert response.headers["Content-Type"] == "image/png"
    assert Image.open(io.BytesIO(response.body)).size == (3, 3)
    with open(os.path.join(media_store, EXPERIMENT, "pictures", entries[1]["file"]), "rb") as f:
        assert response.body == f.read()


@pytest.mark.gen_test
async def test_media_tag_filter(http_client, base_url):
    entries = await get_json(http_client, base_url, url("pictures", "?tag=samples"))
    assert [e["step"] for e in entries] == [0, 1]
    entries = await get_json(http_client, base_url, url("pictures", "?tag=curve&tag=my%20img%2Fx"))
    assert [e["tag"] for e in entries] == ["curve", "my img/x"]
    assert await get_json(http_client, base_url, url("pictures", "?tag=nope")) == []


@pytest.mark.gen_test
async def test_media_none_logged(http_client, base_url):
    assert await get_json(http_client, base_url, url("plain")) == []


@pytest.mark.gen_test
async def test_media_unknown_run(http_client, base_url):
    response = await http_client.fetch(base_url + url("nope"), raise_error=False)
    assert_api_error(response, 404, "nope")


# Hand-built media logs


def line(file, step=0, tag="t") -> str:
    return json.dumps({"bytes": 1, "file": file, "logged_at": "2026-01-05T09:00:00Z", "step": step, "tag": tag})


def test_bad_lines_dropped(tmp_path, caplog):
    root = str(tmp_path)
    folder = make_run(root, "e", "r")
    outside = tmp_path / "secret.png"
    outside.write_bytes(b"x")
    os.makedirs(os.path.join(folder, "media"))
    os.symlink(str(outside), os.path.join(folder, "media", "link.png"))
    lines = [
        line("media/a.png", 0),
        line("../other/x.png"),
        line("/etc/passwd"),
        line("media/../../x.png"),
        line("media/link.png"),
        line(None),
        "not json",
        "[1, 2]",
        json.dumps({"file": "media/b.png", "step": "3", "tag": 5, "bytes": True}),
        line("media/c.png", 2),
    ]
    write_text(os.path.join(folder, "media.jsonl"), "\n".join(lines) + "\n")
    entries = Store(root).media("e", "r")
    assert [e["file"] for e in entries] == ["media/a.png", "media/b.png", "media/c.png"]
    # Fields of the wrong type are null, never guessed.
    assert entries[1] == {"tag": None, "step": None, "file": "media/b.png", "mime": "image/png",
                          "bytes": None, "logged_at": None}
    assert "Skipped 7 lines" in caplog.text


def test_half_written_line_waits(tmp_path):
    root = str(tmp_path)
    folder = make_run(root, "e", "r", status="RUNNING")
    path = os.path.join(folder, "media.jsonl")
    whole = line("media/b.png", 1)
    write_text(path, line("media/a.png", 0) + "\n" + whole[:20])
    media_log = MediaLog(folder)
    assert [e["file"] for e in media_log.read()] == ["media/a.png"]

    with open(path, "a") as f:
        f.write(whole[20:])
    assert [e["file"] for e in media_log.read()] == ["media/a.png", "media/b.png"]

    with open(path, "a") as f:
        f.write("\n" + line("media/c.png", 2) + "\n")
    assert [e["file"] for e in media_log.read()] == ["media/a.png", "media/b.png", "media/c.png"]


def test_media_log_cached_by_identity(tmp_path):
    root = str(tmp_path)
    folder = make_run(root, "e", "r")
    path = os.path.join(folder, "media.jsonl")
    write_text(path, line("media/a.png") + "\n")
    media_log = MediaLog(folder)
    first = media_log.read()
    assert media_log.read() is first

    # A file rewritten in place, longer, is read again from its start.
    with open(path, "w") as f:
        f.write(line("media/z.png") + "\n" + line("media/y.png") + "\n")
    assert [e["file"] for e in media_log.read()] == ["media/z.png", "media/y.png"]

    # So is a new file, whatever its inode.
    os.remove(path)
    write_text(path, line("media/long-name.png") + "\n")
    assert [e["file"] for e in media_log.read()] == ["media/long-name.png"]
    os.remove(path)
    assert media_log.read() == []
