"""Notebooks spawned in extension mode: written beside the data, opened in the host server, run."""

from __future__ import annotations

import asyncio
import glob
import importlib.util
import json
import os
import re
import time
from types import SimpleNamespace

import nbformat
import pytest
from jupyter_server.utils import url_path_join

from expman_tornado.jupyter.notebook import METADATA_KEY, content_hash
from expman_tornado.jupyter.servers import HostJupyterServer

from ..conftest import assert_api_error
from ..stores import new_run
from .helpers import HIDE_MATPLOTLIB, images, output_text, run_notebook, spawn_body

#: Seconds the real logger may take to write its first live segment.
SEGMENT_TIMEOUT = 10.0


async def spawn(jp_fetch, **fields) -> dict:
    response = await jp_fetch("expman", "api", "jupyter", "spawn", method="POST",
                              body=spawn_body(**fields))
    assert response.code == 200
    return json.loads(response.body)


async def test_spawn_one_run_writes_notebook(jp_fetch, jp_base_url, store_root):
    answer = await spawn(jp_fetch, run="baseline")

    expected = os.path.join(os.path.realpath(store_root), "vision", "baseline", "interactive.ipynb")
    assert answer["path"] == expected
    assert answer["mode"] == "extension"
    assert answer["written"] is True
    assert answer["edited"] is False
    # Plain jupyter_server has no notebook front end: the URL is the contents API.
    assert answer["url"] == url_path_join(
        jp_base_url, "api/contents/experiments/vision/baseline/interactive.ipynb")
    notebook = nbformat.read(expected, as_version=4)
    nbformat.validate(notebook)
    assert notebook.metadata[METADATA_KEY]["content_sha256"] == content_hash(notebook)
    assert notebook.metadata[METADATA_KEY]["runs"] == ["baseline"]


async def test_spawned_url_opens_in_host(jp_fetch, http_server_client, jp_auth_header):
    answer = await spawn(jp_fetch, run="baseline")

    response = await http_server_client.fetch(answer["url"], headers=jp_auth_header)
    model = json.loads(response.body)
    assert model["type"] == "notebook"
    assert model["content"]["metadata"][METADATA_KEY]["experiment"] == "vision"


async def test_one_run_notebook_plots(jp_fetch):
    pytest.importorskip("matplotlib")
    answer = await spawn(jp_fetch, run="baseline")

    notebook = await run_notebook(answer["path"])

    config_cell, metrics_cell, plot_cell = notebook.cells[2:5]
    assert "'lr': 0.001" in output_text(config_cell)
    assert "loss" in output_text(metrics_cell)
    # One plot per metric: loss and val_acc.
    assert images(plot_cell) == 2


async def test_one_run_notebook_tables(jp_fetch):
    answer = await spawn(jp_fetch, run="baseline")

    notebook = await run_notebook(answer["path"], prelude=HIDE_MATPLOTLIB)

    plot_cell = notebook.cells[4]
    assert images(plot_cell) == 0
    assert "val_acc" in output_text(plot_cell)


async def test_two_runs_notebook_runs(jp_fetch, store_root):
    answer = await spawn(jp_fetch, runs=["baseline", "nan"])

    assert answer["path"] == os.path.join(os.path.realpath(store_root), "vision", "interactive.ipynb")
    notebook = await run_notebook(answer["path"])

    sizes = output_text(notebook.cells[3])
    assert "'baseline': 200" in sizes
    assert "'nan': 5" in sizes
    if importlib.util.find_spec("matplotlib") is not None:
        assert images(notebook.cells[4]) == 2


async def test_two_runs_notebook_tables(jp_fetch):
    answer = await spawn(jp_fetch, runs=["baseline", "nan"])

    notebook = await run_notebook(answer["path"], prelude=HIDE_MATPLOTLIB)

    compare_cell = notebook.cells[4]
    assert images(compare_cell) == 0
    assert "val_acc" in output_text(compare_cell)
    assert nbformat.read(answer["path"], as_version=4).metadata[METADATA_KEY]["runs"] == [
        "baseline", "nan"]


async def test_failed_run_notebook_runs(jp_fetch):
    answer = await spawn(jp_fetch, run="failed")

    notebook = await run_notebook(answer["path"])

    assert "loss" in output_text(notebook.cells[3])


async def test_running_run_notebook_reads_segments(jp_fetch, store_root):
    run = new_run(store_root, "vision", "training", flush_interval_ms=50, flush_interval_rows=10)
    try:
        for step in range(30):
            run.log_vector({"loss": 1.0 / (step + 1)}, step=step)
        folder = os.path.join(store_root, "vision", "training")
        deadline = time.monotonic() + SEGMENT_TIMEOUT
        while time.monotonic() < deadline and not glob.glob(os.path.join(folder, "vectors-*.arrow")):
            await asyncio.sleep(0.05)
        # The writer flushes every 50 ms; wait for the last rows too.
        await asyncio.sleep(0.5)
        assert not os.path.exists(os.path.join(folder, "vectors.parquet"))

        answer = await spawn(jp_fetch, run="training")
        notebook = await run_notebook(answer["path"], prelude=HIDE_MATPLOTLIB)
    finally:
        run.close()

    assert "shape: (5, 3)" in output_text(notebook.cells[3])
    # The table of statistics counts every step logged, all of them still in live segments.
    assert re.search(r"count\s+┆\s+30\.0\s+┆\s+30\.0", output_text(notebook.cells[4]))


async def test_host_url_with_front_end(tmp_path):
    host = SimpleNamespace(root_dir=str(tmp_path), base_url="/user/alice/",
                           jpserver_extensions={"jupyterlab": True})
    server = HostJupyterServer(host)

    url = await server.url_for(str(tmp_path / "exp" / "my run" / "interactive.ipynb"))

    assert url == "/user/alice/lab/tree/exp/my%20run/interactive.ipynb"


async def test_spawn_again_keeps_notebook(jp_fetch):
    first = await spawn(jp_fetch, run="baseline")
    modified = os.stat(first["path"]).st_mtime_ns

    second = await spawn(jp_fetch, run="baseline")

    assert second["path"] == first["path"]
    assert second["written"] is False
    assert second["edited"] is False
    assert os.stat(first["path"]).st_mtime_ns == modified


async def test_run_notebook_not_edited(jp_fetch):
    # Running a notebook adds outputs; that is not an edit, and the file is kept as it is.
    first = await spawn(jp_fetch, run="baseline")
    notebook = await run_notebook(first["path"])
    nbformat.write(notebook, first["path"])

    second = await spawn(jp_fetch, run="baseline")

    assert second["edited"] is False
    assert second["written"] is False
    assert nbformat.read(first["path"], as_version=4).cells[2].get("outputs")


async def test_edited_notebook_not_overwritten(jp_fetch):
    first = await spawn(jp_fetch, run="baseline")
    notebook = nbformat.read(first["path"], as_version=4)
    notebook.cells.append(nbformat.v4.new_code_cell("my_analysis = 42"))
    nbformat.write(notebook, first["path"])
    with open(first["path"], "rb") as f:
        edited = f.read()

    second = await spawn(jp_fetch, run="baseline")

    assert second["edited"] is True
    assert second["written"] is False
    assert second["path"] == first["path"]
    assert second["url"] == first["url"]
    with open(first["path"], "rb") as f:
        assert f.read() == edited


@pytest.mark.parametrize(
    "content",
    [b"", b"not json", b"[]", b"{}", b'{"cells": 3}', b"\xff\xfe\x00",
     b'{"nbformat": 4, "nbformat_minor": 5, "metadata": {"expman_tornado": 7}, "cells": []}'],
    ids=["empty", "text", "list", "object", "bad-cells", "binary", "bad-metadata"],
)
async def test_foreign_file_not_overwritten(jp_fetch, store_root, content):
    path = os.path.join(store_root, "vision", "baseline", "interactive.ipynb")
    with open(path, "wb") as f:
        f.write(content)

    answer = await spawn(jp_fetch, run="baseline")

    assert answer["edited"] is True
    assert answer["written"] is False
    with open(path, "rb") as f:
        assert f.read() == content


async def test_spawn_leaves_no_temporary_files(jp_fetch, store_root):
    await spawn(jp_fetch, run="baseline")
    await spawn(jp_fetch, runs=["baseline", "failed"])

    for folder in (os.path.join(store_root, "vision"), os.path.join(store_root, "vision", "baseline")):
        assert [name for name in os.listdir(folder) if ".tmp" in name] == []


#: Request bodies that are rejected, and the field each error must name.
BAD_BODIES = [
    (b"", "JSON"),
    (b"{", "JSON"),
    (b"[]", "object"),
    (b'"vision"', "object"),
    (b'{"run": "baseline"}', "experiment"),
    (b'{"experiment": 3, "run": "baseline"}', "experiment"),
    (b'{"experiment": "", "run": "baseline"}', "experiment"),
    (b'{"experiment": "vision"}', "run"),
    (b'{"experiment": "vision", "run": "baseline", "runs": ["nan"]}', "runs"),
    (b'{"experiment": "vision", "run": ""}', "run"),
    (b'{"experiment": "vision", "run": ["baseline"]}', "run"),
    (b'{"experiment": "vision", "runs": []}', "runs"),
    (b'{"experiment": "vision", "runs": "baseline"}', "runs"),
    (b'{"experiment": "vision", "runs": ["baseline", 3]}', "runs"),
    (b'{"experiment": "vision", "runs": ["baseline", ""]}', "runs"),
    (json.dumps({"experiment": "vision", "runs": ["r%d" % i for i in range(51)]}).encode(), "runs"),
    (b'{"experiment": "..", "run": "baseline"}', ".."),
    (b'{"experiment": "vision", "run": "../nan"}', "../nan"),
]


@pytest.mark.parametrize("body, field", BAD_BODIES, ids=[str(i) for i in range(len(BAD_BODIES))])
async def test_bad_body_400(jp_fetch, body, field):
    response = await jp_fetch("expman", "api", "jupyter", "spawn", method="POST", body=body,
                              raise_error=False)

    assert_api_error(response, 400, field)


@pytest.mark.parametrize(
    "fields, name",
    [({"run": "nope"}, "nope"), ({"runs": ["baseline", "nope"]}, "nope"),
     ({"experiment": "nope", "run": "baseline"}, "nope")],
    ids=["run", "one-of-runs", "experiment"],
)
async def test_unknown_run_404(jp_fetch, store_root, fields, name):
    response = await jp_fetch("expman", "api", "jupyter", "spawn", method="POST",
                              body=spawn_body(**fields), raise_error=False)

    assert_api_error(response, 404, name)
    assert not os.path.exists(os.path.join(store_root, "vision", "interactive.ipynb"))


async def test_status_reports_host(jp_fetch, jp_base_url):
    response = await jp_fetch("expman", "api", "jupyter", "status")

    status = json.loads(response.body)
    assert status == {"running": True, "url": jp_base_url, "pid": os.getpid()}


async def test_stop_refused_in_extension(jp_fetch):
    response = await jp_fetch("expman", "api", "jupyter", "stop", method="POST", body=b"",
                              raise_error=False)

    assert_api_error(response, 409, "extension")


class TestStoreOutsideRoot:
    """A store that the Jupyter server cannot open: notebooks go under its root instead."""

    @pytest.fixture
    def expman_config(self, real_store) -> dict:
        return {"store": real_store}

    async def test_notebook_under_root(self, jp_fetch, jp_base_url, jp_root_dir, real_store):
        answer = await spawn(jp_fetch, run="baseline")

        root = os.path.realpath(jp_root_dir)
        assert answer["path"] == os.path.join(root, "expman-notebooks", "vision", "baseline",
                                              "interactive.ipynb")
        assert os.path.isfile(answer["path"])
        assert answer["url"] == url_path_join(
            jp_base_url, "api/contents/expman-notebooks/vision/baseline/interactive.ipynb")
        assert not os.path.exists(os.path.join(real_store, "vision", "baseline", "interactive.ipynb"))

    async def test_unwritable_folder_500(self, jp_fetch, jp_root_dir):
        (jp_root_dir / "expman-notebooks").write_text("a file where the folder goes")

        response = await jp_fetch("expman", "api", "jupyter", "spawn", method="POST",
                                  body=spawn_body(run="baseline"), raise_error=False)

        assert_api_error(response, 500, "Not a directory")

    async def test_notebook_reads_store(self, jp_fetch, jp_root_dir):
        answer = await spawn(jp_fetch, runs=["baseline", "failed"])

        assert answer["path"] == os.path.join(os.path.realpath(jp_root_dir), "expman-notebooks",
                                              "vision", "interactive.ipynb")
        notebook = await run_notebook(answer["path"])
        assert "'failed': 1" in output_text(notebook.cells[3])


class TestReadOnly:
    @pytest.fixture
    def expman_config(self, store_root) -> dict:
        return {"store": store_root, "read_only": True}

    async def test_spawn_refused(self, jp_fetch, store_root):
        response = await jp_fetch("expman", "api", "jupyter", "spawn", method="POST",
                                  body=spawn_body(run="baseline"), raise_error=False)

        assert_api_error(response, 403, "read-only")
        assert not os.path.exists(os.path.join(store_root, "vision", "baseline",
                                               "interactive.ipynb"))
