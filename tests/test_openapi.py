"""The OpenAPI document: complete, valid, and true of the server (checked with schemathesis)."""

from __future__ import annotations

import json

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from expman_tornado.app import ExpmanTornado
from expman_tornado.handlers.openapi import PATHS, build_document
from expman_tornado.registry import BUILTIN_GROUPS, load_object

from .conftest import strict_json
from .server_thread import ServerThread
from .stores import write_real_store, write_text

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]

#: Real names, so that generated requests also reach existing runs and files.
RUNS = [("vision", "baseline"), ("vision", "nan"), ("vision", "failed")]
FILES = ["notes.txt", "plots/curve.csv", "run.yaml", "run.log", "vectors.parquet", "config.yaml"]


async def fetch_document(http_client, base_url) -> dict:
    response = await http_client.fetch(base_url + "/api/openapi.json")
    assert response.headers["Content-Type"].startswith("application/json")
    return strict_json(response.body)


def builtin_api_patterns(group: str) -> list[str]:
    return [route[0] for route in load_object(BUILTIN_GROUPS[group]) if route[0].startswith("/api")]


@pytest.mark.gen_test
async def test_document_is_openapi_31(http_client, base_url):
    document = await fetch_document(http_client, base_url)
    assert document["openapi"] == "3.1.0"
    assert document["servers"] == [{"url": "/"}]
    for name, schema in document["components"]["schemas"].items():
        Draft202012Validator.check_schema(schema)
    for path, item in document["paths"].items():
        for method, operation in item.items():
            assert operation["responses"]["default"]["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/Error"}, (method, path)


@pytest.mark.parametrize("group", [name for name in BUILTIN_GROUPS if name != "frontend"])
def test_every_builtin_route_documented(group):
    documented = {pattern for pattern, _, _ in PATHS}
    missing = [pattern for pattern in builtin_api_patterns(group) if pattern not in documented]
    assert missing == []


@pytest.mark.gen_test
async def test_document_lists_served_routes(http_client, base_url):
    document = await fetch_document(http_client, base_url)
    assert "/api/run/{experiment}/{run}/stream/vectors" in document["paths"]
    assert "/api/experiments/{experiment}/runs/{run}/metrics" in document["paths"]
    live = document["paths"]["/api/experiments/{experiment}/runs/{run}/live"]["get"]
    assert list(live["responses"]["200"]["content"]) == ["text/event-stream"]


class TestGroupDisabled:
    @pytest.fixture
    def server_config(self) -> dict:
        return {"disabled_handler_groups": ["compat"], "base_url": "/lab/"}

    @pytest.mark.gen_test
    async def test_disabled_routes_left_out(self, http_client, base_url):
        document = await fetch_document(http_client, base_url + "/lab")
        assert document["servers"] == [{"url": "/lab"}]
        assert "/api/experiments/{experiment}/runs/{run}/metadata" not in document["paths"]
        assert "/api/run/{experiment}/{run}/stream/vectors" not in document["paths"]
        assert "/api/experiments/{experiment}/runs/{run}" in document["paths"]


# Schemathesis: requests generated from the document, answers checked against it.


#: The document that a server with every built-in group serves.
DOCUMENT = build_document("/", [pattern + "$" for pattern, _, _ in PATHS])

# NOTE: schemathesis 4.32.5's ``schemathesis.pytest.from_fixture`` fails under
# pytest 9.2 (it sets ``Node._nodeid``, which pytest 9 no longer has), so the
# schema is loaded from the document built in the test and compared with the
# served one by test_served_document_is_tested.
schema = schemathesis.openapi.from_dict(DOCUMENT).exclude(tag="streams")


@pytest.fixture(scope="module")
def openapi_server(tmp_path_factory):
    """A read-only server on a real-logger store, plus a console.log with odd bytes."""
    root = str(tmp_path_factory.mktemp("openapi-store"))
    write_real_store(root)
    write_text(root + "/vision/baseline/console.log", "epoch 1\rbar\nbad \xff utf-8\n".encode("latin-1"))
    application = ExpmanTornado(store=root, read_only=True, watcher="poll", poll_interval=5.0)
    with ServerThread(application) as server:
        yield server


def test_served_document_is_tested(openapi_server):
    response = requests.get(openapi_server.url + "/api/openapi.json", timeout=10)
    assert response.json() == json.loads(json.dumps(DOCUMENT))


@schema.parametrize()
@schema.given(names=st.sampled_from([None, *RUNS]), file=st.sampled_from([None, *FILES]))
@settings(max_examples=12, deadline=2000, phases=[Phase.explicit, Phase.generate],
          suppress_health_check=list(HealthCheck), database=None)
def test_api_matches_document(case, names, file, openapi_server):
    """Requests generated from the document, answers checked against it; streams left out."""
    parameters = case.path_parameters or {}
    if names is not None and "experiment" in parameters:
        parameters["experiment"] = names[0]
        if "run" in parameters:
            parameters["run"] = names[1]
    if file is not None and "path" in parameters:
        parameters["path"] = file
    response = case.call_and_validate(base_url=openapi_server.url, checks=CHECKS, timeout=10)
    if response.status_code >= 400:
        body = json.loads(response.content)
        assert body["error"]["status"] == response.status_code
