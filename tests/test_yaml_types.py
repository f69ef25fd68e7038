"""Values in run.yaml and config.yaml read with the types the logger wrote them with.

The expman logger writes YAML 1.2, where ``yes`` and ``1:30`` are strings and
``1e30`` is a number; YAML 1.1 readers, PyYAML's defaults among them, read them
the other way round.
"""

from __future__ import annotations

import json
import os
import urllib.parse

import pytest
import yaml

from expman_tornado.jupyter.notebook import _LOADERS
from expman_tornado.store import Store
from expman_tornado.store.yamlfile import dump_yaml_mapping, parse_yaml_mapping

from .stores import new_run

#: Params whose YAML 1.1 reading differs from what was logged, and a few plain ones.
PARAMS = {
    "mode": "yes",
    "on": "off",
    "answer": "Yes",
    "time": "1:30",
    "count": "1_000",
    "zip": "017",
    "octal": "0o17",
    "hex": "0x10",
    "exp": "1E3",
    "big": 1e30,
    "huge": 12345678901234567890.0,
    "lr": 1e-5,
    "tiny": 1.5e-7,
    "steps": 7,
    "flag": True,
    "date": "2024-01-01",
    "word": "null",
    "tilde": "~",
    "merge": "<<",
}


@pytest.fixture(scope="module")
def store_root(tmp_path_factory) -> str:
    root = str(tmp_path_factory.mktemp("yaml-types"))
    run = new_run(root, "types", "logged")
    run.log_params(PARAMS)
    run.log_vector({"loss": 1.0}, step=0)
    run.set_description("on")
    run.set_tags(["yes", "1:30", "1e3"])
    run.close()
    return root


def run_url(base_url: str, run: str = "logged") -> str:
    return base_url + "/api/experiments/types/runs/" + urllib.parse.quote(run)


async def fetch_json(http_client, url: str, **options):
    response = await http_client.fetch(url, **options)
    return json.loads(response.body)


@pytest.mark.gen_test
async def test_params_as_logged(http_client, base_url):
    details = await fetch_json(http_client, run_url(base_url))
    assert details["config"] == PARAMS
    assert details["description"] == "on"
    assert details["tags"] == ["yes", "1:30", "1e3"]
    runs = await fetch_json(http_client, base_url + "/api/experiments/types/runs")
    assert runs[0]["params"] == PARAMS


@pytest.mark.gen_test
@pytest.mark.parametrize("query", ["big>1e29", "mode=yes", "time=1:30", "zip=017"])
async def test_search_compares_logged_values(http_client, base_url, query):
    runs = await fetch_json(http_client, base_url + "/api/experiments/types/runs?q=" + urllib.parse.quote(query))
    assert [run["id"] for run in runs] == ["logged"]


@pytest.mark.gen_test
async def test_edit_keeps_strings_strings(http_client, base_url, store_root):
    """An edit writes strings that either YAML version would take for another type quoted."""
    tags = ["1e30", "yes", "017", "~", "2024-01-01"]
    body = json.dumps({"description": "1e-5", "tags": tags})
    edited = await fetch_json(http_client, run_url(base_url), method="PATCH", body=body,
                              headers={"Cookie": "_xsrf=abcd", "X-XSRFToken": "abcd"})
    assert edited["description"] == "1e-5"
    assert edited["tags"] == tags
    path = os.path.join(store_root, "types", "logged", "run.yaml")
    with open(path, encoding="utf-8") as file:
        written = yaml.safe_load(file)
    assert written["description"] == "1e-5"
    assert written["tags"] == tags
    assert parse_yaml_mapping(path)["tags"] == tags


@pytest.mark.parametrize("value", ["1e30", "yes", "on", "1:30", "0o17", "017", "", "~", "null", ".5", "1_000",
                                   "<<", "=", "2024-01-01", "y", "N", "a\x85b", "a\u2028b", "a\u2029b", "a\nb",
                                   1e30, float("inf"), 17, None, True])
def test_dump_reads_back(tmp_path, value):
    path = tmp_path / "value.yaml"
    path.write_text(dump_yaml_mapping({"key": value}), encoding="utf-8")
    assert parse_yaml_mapping(str(path)) == {"key": value}
    assert yaml.safe_load(path.read_text(encoding="utf-8")) == {"key": value}


def test_notebook_reads_config_as_server(store_root):
    """The notebook's own loader gives the config the server shows."""
    namespace: dict = {}
    exec(_LOADERS, namespace)  # noqa: S102 (the package's own notebook cell)
    assert namespace["load_config"](os.path.join(store_root, "types", "logged")) == PARAMS


def test_null_and_boolean_keys_keep_spelling(tmp_path):
    folder = tmp_path / "store" / "e" / "r"
    folder.mkdir(parents=True)
    (folder / "run.yaml").write_text("status: FINISHED\n", encoding="utf-8")
    (folder / "config.yaml").write_text("null: a\ntrue: b\nfalse: c\n", encoding="utf-8")
    store = Store(str(tmp_path / "store"))
    assert store.run("e", "r")["config"] == {"null": "a", "true": "b", "false": "c"}
