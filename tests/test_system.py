"""System metrics: ``GET …/runs/:run/system`` on runs the real logger sampled once a second."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import time

import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest

from .conftest import assert_api_error, strict_json
from .stores import new_run

EXPERIMENT = "system"

#: Columns the logger samples on every machine (GPU columns only where a GPU is).
SAMPLED = ("cpu.util_pct", "mem.used_gb", "mem.util_pct")


def sampled_run(root: str, name: str, samples: int):
    """Start a run that samples system metrics every second; return it once ``samples`` rows exist."""
    run = new_run(root, EXPERIMENT, name, system_metrics_interval_secs=1, flush_interval_ms=50)
    run.log_vector({"loss": 1.0}, step=0)
    folder = os.path.join(root, EXPERIMENT, name)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        segments = [n for n in os.listdir(folder) if n.startswith("system-") and n.endswith(".arrow")]
        rows = 0
        for segment in segments:
            try:
                with open(os.path.join(folder, segment), "rb") as f:
                    rows += ipc.open_stream(f.read()).read_all().num_rows
            except (pa.ArrowInvalid, OSError):
                pass
        if rows >= samples:
            break
        time.sleep(0.1)
    return run


@pytest.fixture(scope="module")
def system_store(tmp_path_factory) -> str:
    root = str(tmp_path_factory.mktemp("system"))
    sampled_run(root, "closed", 3).close()
    return root


@pytest.fixture
def store_root(system_store) -> str:
    return system_store


def url(run: str, query: str = "") -> str:
    return "/api/experiments/%s/runs/%s/system%s" % (EXPERIMENT, run, query)


async def fetch(http_client, base_url, path):
    return await http_client.fetch(base_url + path, raise_error=False)


def parquet_rows(system_store: str) -> list[dict]:
    return pq.read_table(os.path.join(system_store, EXPERIMENT, "closed", "system.parquet")).to_pylist()


@pytest.mark.gen_test
async def test_system_rows_from_parquet(http_client, base_url, system_store):
    rows = strict_json((await fetch(http_client, base_url, url("closed"))).body)
    on_disk = parquet_rows(system_store)
    assert len(rows) == len(on_disk) >= 3
    assert [row["step"] for row in rows] == [row["step"] for row in on_disk]
    for name in SAMPLED:
        assert [row[name] for row in rows] == [row[name] for row in on_disk]
    assert rows[0]["timestamp"].endswith("Z")


@pytest.mark.gen_test
async def test_system_columnar_columns(http_client, base_url, system_store):
    body = strict_json((await fetch(http_client, base_url, url("closed", "?format=columnar&columns=mem.used_gb"))).body)
    assert list(body) == ["step", "timestamp", "mem.used_gb"]
    assert body["mem.used_gb"] == [row["mem.used_gb"] for row in parquet_rows(system_store)]


@pytest.mark.gen_test
async def test_system_step_range_and_max_points(http_client, base_url):
    rows = strict_json((await fetch(http_client, base_url, url("closed", "?since_step=0&until_step=1"))).body)
    assert [row["step"] for row in rows] == [1]
    rows = strict_json((await fetch(http_client, base_url, url("closed", "?max_points=2&columns=mem.used_gb"))).body)
    assert [row["step"] for row in rows] == [0, rows[-1]["step"]]
    assert rows[-1]["step"] >= 2


@pytest.mark.gen_test
async def test_system_arrow_csv_parquet(http_client, base_url, system_store):
    on_disk = parquet_rows(system_store)

    response = await fetch(http_client, base_url, url("closed", "?format=arrow"))
    assert response.headers["Content-Type"] == "application/vnd.apache.arrow.stream"
    table = ipc.open_stream(response.body).read_all()
    assert table.column("step").to_pylist() == [row["step"] for row in on_disk]
    assert table.schema.field("timestamp").type == pa.timestamp("us", tz="UTC")

    response = await fetch(http_client, base_url, url("closed", "?format=csv"))
    assert response.headers["Content-Type"].startswith("text/csv")
    assert "closed-system.csv" in response.headers["Content-Disposition"]
    records = list(csv.DictReader(io.StringIO(response.body.decode())))
    assert [int(record["step"]) for record in records] == [row["step"] for row in on_disk]

    response = await fetch(http_client, base_url, url("closed", "?format=parquet"))
    assert "closed-system.parquet" in response.headers["Content-Disposition"]
    assert pq.read_table(io.BytesIO(response.body)).num_rows == len(on_disk)


@pytest.mark.gen_test
@pytest.mark.parametrize("query, name", [("?format=xml", "format"), ("?max_points=-1", "max_points"),
                                          ("?since_step=a", "since_step")])
async def test_system_bad_parameter(http_client, base_url, query, name):
    assert_api_error(await fetch(http_client, base_url, url("closed", query)), 400, name)


@pytest.mark.gen_test
async def test_system_none_logged(http_client, base_url, system_store):
    run = new_run(system_store, EXPERIMENT, "quiet")
    run.log_vector({"loss": 1.0}, step=0)
    run.close()
    assert strict_json((await fetch(http_client, base_url, url("quiet"))).body) == []
    body = strict_json((await fetch(http_client, base_url, url("quiet", "?format=columnar"))).body)
    assert body == {"step": [], "timestamp": []}


@pytest.mark.gen_test(timeout=60)
async def test_system_live_segments(http_client, base_url, system_store):
    run = await asyncio.get_running_loop().run_in_executor(None, sampled_run, system_store, "live", 2)
    try:
        folder = os.path.join(system_store, EXPERIMENT, "live")
        assert not os.path.exists(os.path.join(folder, "system.parquet"))
        rows = strict_json((await fetch(http_client, base_url, url("live"))).body)
        assert len(rows) >= 2
        assert [row["step"] for row in rows] == list(range(len(rows)))
        assert all(name in rows[-1] for name in SAMPLED)
    finally:
        run.close()
    closed = strict_json((await fetch(http_client, base_url, url("live"))).body)
    assert [row["step"] for row in closed[: len(rows)]] == [row["step"] for row in rows]
