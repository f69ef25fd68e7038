"""Every API route on a store written by the real logger."""

from __future__ import annotations

import json
import logging
import os

import pyarrow as pa
import pytest
import yaml

from .conftest import assert_api_error, strict_json

RUN = "/api/experiments/vision/runs/baseline"


@pytest.mark.gen_test
async def test_experiments_list(http_client, base_url):
    response = await http_client.fetch(base_url + "/api/experiments")
    experiments = strict_json(response.body)
    assert [e["id"] for e in experiments] == ["vision"]
    vision = experiments[0]
    assert vision["runs_count"] == 3
    assert vision["active_runs"] == 0
    assert vision["last_activity"].endswith("Z")
    assert set(vision) >= {"display_name", "description", "tags", "project"}


@pytest.mark.gen_test
async def test_runs_fields_and_tails(http_client, base_url, real_store):
    response = await http_client.fetch(base_url + "/api/experiments/vision/runs")
    runs = {r["id"]: r for r in strict_json(response.body)}
    assert set(runs) == {"baseline", "nan", "failed"}
    baseline = runs["baseline"]
    assert baseline["status"] == "FINISHED"
    assert baseline["stale"] is False
    with open(os.path.join(real_store, "vision", "baseline", "run.yaml")) as f:
        on_disk = yaml.safe_load(f)
    assert baseline["tags"] == (on_disk["tags"] or [])
    assert baseline["params"]["optimizer.name"] == "adamw"
    assert baseline["params"]["lr"] == 0.001
    assert baseline["metrics"]["loss"] == pytest.approx(1 / 200)
    assert baseline["metrics"]["val_acc"] == pytest.approx(150 / 200)
    assert baseline["scalars"] == {"best_acc": 0.75}
    assert runs["failed"]["status"] == "FAILED"
    # The logger stores NaN and ±Inf as null when it compacts a run, so the tail
    # is the last finite value.
    assert runs["nan"]["metrics"]["loss"] == 0.5


@pytest.mark.gen_test
async def test_runs_metrics_filter(http_client, base_url):
    response = await http_client.fetch(base_url + "/api/experiments/vision/runs?metrics=val_acc")
    baseline = [r for r in strict_json(response.body) if r["id"] == "baseline"][0]
    assert list(baseline["metrics"]) == ["val_acc"]
    assert baseline["scalars"] == {}


@pytest.mark.gen_test
async def test_run_details(http_client, base_url):
    details = strict_json((await http_client.fetch(base_url + RUN)).body)
    assert details["config"]["optimizer"] == {"name": "adamw", "wd": 0.01}
    assert details["rows"] == 200
    names = [c["name"] for c in details["columns"]]
    # The logger orders metric columns as it likes; step and timestamp come first.
    assert names[:2] == ["step", "timestamp"]
    assert sorted(names[2:]) == ["loss", "val_acc"]
    assert details["artifacts_count"] == 2
    assert details["logs"] == ["run.log"]


@pytest.mark.gen_test
async def test_metrics_rows(http_client, base_url):
    rows = strict_json((await http_client.fetch(base_url + RUN + "/metrics")).body)
    assert len(rows) == 200
    assert rows[0]["step"] == 0
    assert rows[0]["timestamp"].endswith("Z")
    assert rows[50]["val_acc"] == 0.25
    assert rows[51]["val_acc"] is None


@pytest.mark.gen_test
async def test_metrics_step_range(http_client, base_url):
    url = base_url + RUN + "/metrics?since_step=10&until_step=20&columns=loss"
    rows = strict_json((await http_client.fetch(url)).body)
    assert [r["step"] for r in rows] == list(range(11, 21))
    assert set(rows[0]) == {"step", "timestamp", "loss"}


@pytest.mark.gen_test
async def test_metrics_max_points(http_client, base_url):
    url = base_url + RUN + "/metrics?max_points=20&columns=loss"
    rows = strict_json((await http_client.fetch(url)).body)
    steps = [r["step"] for r in rows]
    assert len(rows) <= 20
    assert steps[0] == 0
    assert steps[-1] == 199


@pytest.mark.gen_test
async def test_metrics_columnar(http_client, base_url):
    url = base_url + RUN + "/metrics?format=columnar"
    columns = strict_json((await http_client.fetch(url)).body)
    assert set(columns) == {"step", "timestamp", "loss", "val_acc"}
    assert all(len(values) == 200 for values in columns.values())


@pytest.mark.gen_test
async def test_metrics_arrow_format(http_client, base_url):
    url = base_url + "/api/experiments/vision/runs/nan/metrics?format=arrow"
    response = await http_client.fetch(url)
    assert response.headers["Content-Type"] == "application/vnd.apache.arrow.stream"
    table = pa.ipc.open_stream(response.body).read_all()
    assert table.schema.field("timestamp").type == pa.timestamp("us", tz="UTC")
    assert table.column("loss").to_pylist()[0] == 1.0
    assert table.column("step").to_pylist() == [0, 1, 2, 3, 4]


@pytest.mark.gen_test
async def test_metrics_csv_and_parquet(http_client, base_url):
    csv = await http_client.fetch(base_url + RUN + "/metrics?format=csv")
    header = csv.body.decode().splitlines()[0].split(",")
    assert header[:2] == ["step", "timestamp"]
    assert sorted(header[2:]) == ["loss", "val_acc"]
    assert len(csv.body.decode().splitlines()) == 201
    parquet = await http_client.fetch(base_url + RUN + "/metrics?format=parquet")
    assert "attachment" in parquet.headers["Content-Disposition"]
    assert pa.BufferReader(parquet.body).size() > 0


@pytest.mark.gen_test
@pytest.mark.parametrize(
    "query, parameter",
    [("since_step=abc", "since_step"), ("max_points=-1", "max_points"), ("format=xml", "format"),
     ("until_step=1.5", "until_step")],
)
async def test_metrics_bad_parameter(http_client, base_url, query, parameter):
    response = await http_client.fetch(base_url + RUN + "/metrics?" + query, raise_error=False)
    assert_api_error(response, 400, mentions=parameter)


@pytest.mark.gen_test
async def test_artifacts_listing(http_client, base_url):
    entries = strict_json((await http_client.fetch(base_url + RUN + "/artifacts")).body)
    by_path = {e["path"]: e for e in entries}
    assert by_path["notes.txt"]["is_default"] is False
    assert by_path["plots/curve.csv"]["mime"] == "text/csv"
    assert by_path["run.yaml"]["is_default"] is True
    assert by_path["vectors.parquet"]["is_default"] is True
    assert by_path["notes.txt"]["url"] == RUN + "/artifacts/notes.txt"
    served = await http_client.fetch(base_url + by_path["run.yaml"]["url"])
    assert b"status: FINISHED" in served.body


@pytest.mark.gen_test
async def test_artifact_file_headers(http_client, base_url):
    response = await http_client.fetch(base_url + RUN + "/artifacts/notes.txt")
    assert response.body == b"hello\n"
    assert response.headers["Content-Type"] == "text/plain; charset=UTF-8"
    etag = response.headers["Etag"]
    assert response.headers["Last-Modified"]
    again = await http_client.fetch(base_url + RUN + "/artifacts/notes.txt",
                                    headers={"If-None-Match": etag}, raise_error=False)
    assert again.code == 304
    ranged = await http_client.fetch(base_url + RUN + "/artifacts/notes.txt", headers={"Range": "bytes=1-2"})
    assert ranged.code == 206
    assert ranged.body == b"el"


@pytest.mark.gen_test
async def test_log_tail(http_client, base_url):
    response = await http_client.fetch(base_url + RUN + "/logs/run.log?tail=1")
    assert response.headers["Content-Type"].startswith("text/plain")
    assert response.body.decode().count("\n") <= 1
    assert "epoch done" in response.body.decode()


@pytest.mark.gen_test
async def test_stats_and_server(http_client, base_url):
    stats = strict_json((await http_client.fetch(base_url + "/api/stats")).body)
    assert stats["experiments"] == 1
    assert stats["runs"] == 3
    assert stats["storage_bytes"] > 0
    server = strict_json((await http_client.fetch(base_url + "/api/server")).body)
    assert server["mode"] == "standalone"
    assert server["read_only"] is False


@pytest.mark.gen_test
@pytest.mark.parametrize(
    "path, status",
    [
        ("/api/nope", 404),
        ("/api", 404),
        ("/api/experiments/unknown/runs", 404),
        ("/api/experiments/vision/runs/unknown", 404),
        ("/api/experiments/vision/runs/baseline/logs/config.yaml", 404),
        ("/api/experiments/vision/runs/baseline/artifacts/missing.txt", 404),
        ("/api/experiments/%2e%2e/runs", 400),
        ("/api/experiments/vision/runs/baseline/artifacts/..%2f..%2frun.yaml", 400),
    ],
)
async def test_api_errors_are_json(http_client, base_url, path, status):
    response = await http_client.fetch(base_url + path, raise_error=False)
    assert_api_error(response, status)


@pytest.mark.gen_test
async def test_method_not_allowed_is_json(http_client, base_url):
    response = await http_client.fetch(base_url + "/api/experiments", method="DELETE", raise_error=False)
    assert_api_error(response, 405)


@pytest.mark.gen_test
async def test_dashboard_page_for_other_paths(http_client, base_url):
    response = await http_client.fetch(base_url + "/experiments/vision")
    assert response.headers["Content-Type"].startswith("text/html")
    assert b"__EXPMAN_BASE_URL__" not in response.body
    assert json.dumps("/")[1:-1].encode() in response.body


@pytest.mark.gen_test
async def test_int64_step_bounds(http_client, base_url):
    url = base_url + RUN + "/metrics?since_step=9223372036854775807"
    assert strict_json((await http_client.fetch(url)).body) == []
    too_big = await http_client.fetch(base_url + RUN + "/metrics?since_step=9223372036854775808",
                                      raise_error=False)
    assert_api_error(too_big, 400, mentions="64-bit")


@pytest.mark.parametrize("path, mentions", [
    ("/api/experiments/vision/runs/baseline/files/run.yaml%00.png", "NUL"),
    ("/api/experiments/vision/runs/baseline/files/a%5Cb", "backslash"),
    # The name as sent, one backslash, not a repr with two.
    ("/api/experiments/vision/runs/a%5Cb", "run name 'a\\b' contains a backslash"),
    ("/api/experiments/a%2Fb/runs", "experiment name 'a/b' contains a slash"),
    ("/api/experiments/%C3%28/runs", "unicode"),
])
@pytest.mark.gen_test
async def test_bad_path_error_names_the_problem(http_client, base_url, path, mentions):
    response = await http_client.fetch(base_url + path, raise_error=False)
    assert_api_error(response, 400, mentions=mentions)


@pytest.mark.gen_test
@pytest.mark.parametrize("path", [
    "/api/stats",
    "/api/server",
    "/api/experiments",
    "/api/experiments/vision/runs",
    "/api/openapi.json",
])
async def test_head_answers_as_get(http_client, base_url, path, caplog):
    got = await http_client.fetch(base_url + path)
    with caplog.at_level(logging.ERROR):
        head = await http_client.fetch(base_url + path, method="HEAD")
    assert [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR] == []
    assert head.code == 200
    assert head.body == b""
    assert head.headers["Content-Type"] == got.headers["Content-Type"]
    if "Content-Length" in head.headers:
        assert int(head.headers["Content-Length"]) == len(got.body)


@pytest.mark.gen_test
@pytest.mark.parametrize("path, status", [
    ("/api/experiments/nope/runs", 404),
    ("/api/no-such-route", 404),
    ("/api/jupyter/spawn", 405),
    ("/api/live", 405),
])
async def test_head_errors_as_get(http_client, base_url, path, status):
    response = await http_client.fetch(base_url + path, method="HEAD", raise_error=False)
    assert response.code == status
    assert response.body == b""


@pytest.mark.gen_test
async def test_dashboard_page_answers_head(http_client, base_url):
    response = await http_client.fetch(base_url + "/experiments/vision", method="HEAD")
    assert response.code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    assert response.body == b""


@pytest.mark.gen_test
@pytest.mark.parametrize("method, path, allowed", [
    ("DELETE", "/api/experiments", "GET, HEAD"),
    ("POST", "/api/experiments/vision", "GET, HEAD, PATCH"),
    ("POST", "/api/experiments/vision/runs/baseline/live", "GET"),
    ("HEAD", "/api/experiments/vision/runs/baseline/live", "GET"),
    ("GET", "/api/jupyter/spawn", "POST"),
])
async def test_405_names_allowed_methods(http_client, base_url, method, path, allowed):
    body = b"{}" if method == "POST" else None
    response = await http_client.fetch(base_url + path, method=method, body=body, raise_error=False,
                                       headers={"Cookie": "_xsrf=x", "X-XSRFToken": "x"})
    assert response.code == 405
    assert response.headers["Allow"] == allowed
