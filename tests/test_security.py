"""Token, XSRF, read-only mode and metadata edits (PATCH) of the standalone server."""

from __future__ import annotations

import json
import os
import threading
import time

import pytest
import yaml

from .conftest import assert_api_error, strict_json
from .stores import new_run, write_real_store

TOKEN = "s3cret-token"
RUN = "/api/experiments/vision/runs/baseline"
XSRF = {"Cookie": "_xsrf=abcd", "X-XSRFToken": "abcd"}


@pytest.fixture
def store_root(tmp_path) -> str:
    """A fresh store per test, since these tests write to it."""
    root = str(tmp_path / "store")
    write_real_store(root)
    return root


class TestToken:
    @pytest.fixture
    def server_config(self) -> dict:
        return {"token": TOKEN}

    @pytest.mark.gen_test
    @pytest.mark.parametrize("path", ["/api/experiments", RUN + "/artifacts/notes.txt", "/", "/assets/x.js",
                                      "/api/experiments/vision/runs/baseline/live"])
    async def test_refused_without_token(self, http_client, base_url, path):
        response = await http_client.fetch(base_url + path, raise_error=False)
        assert response.code == 403
        assert b"s3cret" not in response.body

    @pytest.mark.gen_test
    async def test_api_error_without_token_is_json(self, http_client, base_url):
        response = await http_client.fetch(base_url + "/api/experiments", raise_error=False)
        assert_api_error(response, 403, mentions="token")

    @pytest.mark.gen_test
    async def test_query_token_sets_cookie(self, http_client, base_url):
        first = await http_client.fetch(base_url + "/?token=" + TOKEN)
        assert first.code == 200
        cookie = first.headers["Set-Cookie"].split(";")[0]
        assert cookie.startswith("expman-token=")
        again = await http_client.fetch(base_url + "/api/experiments", headers={"Cookie": cookie})
        assert again.code == 200

    @pytest.mark.gen_test
    async def test_header_token_accepted(self, http_client, base_url):
        response = await http_client.fetch(base_url + "/api/experiments",
                                           headers={"Authorization": "token " + TOKEN})
        assert strict_json(response.body)[0]["id"] == "vision"

    @pytest.mark.gen_test
    async def test_wrong_token_refused(self, http_client, base_url):
        response = await http_client.fetch(base_url + "/api/experiments?token=nope", raise_error=False)
        assert_api_error(response, 403)

    @pytest.mark.gen_test
    async def test_wrong_token_header_on_write_names_token(self, http_client, base_url):
        # Tornado checks XSRF before prepare(), and the error must still name the token.
        response = await http_client.fetch(
            base_url + RUN, method="PATCH", body=json.dumps({"description": "x"}),
            headers={"Authorization": "token wrong"}, raise_error=False)
        assert_api_error(response, 403, mentions="invalid token")

    @pytest.mark.gen_test
    async def test_token_header_skips_xsrf(self, http_client, base_url):
        response = await http_client.fetch(
            base_url + RUN, method="PATCH", body=json.dumps({"description": "by header"}),
            headers={"Authorization": "token " + TOKEN})
        assert strict_json(response.body)["description"] == "by header"


class TestEdits:
    @pytest.mark.gen_test
    async def test_patch_run_keeps_other_fields(self, http_client, base_url, store_root):
        path = os.path.join(store_root, "vision", "baseline", "run.yaml")
        # BaseLoader reads every scalar as text, so quoting changes do not matter.
        with open(path) as f:
            before = yaml.load(f, Loader=yaml.BaseLoader)
        with open(path, "a") as f:
            f.write("custom_key: keep me\n")
        response = await http_client.fetch(
            base_url + RUN, method="PATCH", headers=XSRF,
            body=json.dumps({"name": "Baseline v2", "description": "tuned", "tags": ["a", "b", "a"]}))
        details = strict_json(response.body)
        assert details["name"] == "Baseline v2"
        assert details["tags"] == ["a", "b"]
        assert details["id"] == "baseline"
        with open(path) as f:
            after = yaml.load(f, Loader=yaml.BaseLoader)
        assert after["custom_key"] == "keep me"
        assert after["status"] == before["status"]
        assert after["started_at"] == before["started_at"]
        assert after["vectors"] == before["vectors"]
        assert os.path.isdir(os.path.join(store_root, "vision", "baseline"))

    @pytest.mark.gen_test
    async def test_patch_experiment(self, http_client, base_url):
        response = await http_client.fetch(
            base_url + "/api/experiments/vision", method="PATCH", headers=XSRF,
            body=json.dumps({"display_name": "Vision", "tags": ["cv"]}))
        experiment = strict_json(response.body)
        assert experiment["display_name"] == "Vision"
        assert experiment["tags"] == ["cv"]
        listed = strict_json((await http_client.fetch(base_url + "/api/experiments")).body)
        assert listed[0]["display_name"] == "Vision"

    @pytest.mark.gen_test
    @pytest.mark.parametrize("body, field", [
        ({"colour": "red"}, "colour"),
        ({"tags": "a"}, "tags"),
        ({"tags": [""]}, "tags"),
        ({"name": 3}, "'name' must be a non-empty string"),
        ({"name": ""}, "'name' must be a non-empty string"),
        ({"name": None}, "'name' must be a non-empty string"),
        ({"description": 3}, "'description' must be a string or null"),
        ({}, "changes nothing"),
        ([1], "JSON object"),
    ])
    async def test_patch_invalid_body(self, http_client, base_url, body, field):
        response = await http_client.fetch(base_url + RUN, method="PATCH", headers=XSRF,
                                           body=json.dumps(body), raise_error=False)
        assert_api_error(response, 400, mentions=field)

    @pytest.mark.gen_test
    async def test_patch_not_json(self, http_client, base_url):
        response = await http_client.fetch(base_url + RUN, method="PATCH", headers=XSRF,
                                           body=b"{nope", raise_error=False)
        assert_api_error(response, 400, mentions="JSON")

    @pytest.mark.gen_test
    async def test_patch_without_xsrf(self, http_client, base_url):
        response = await http_client.fetch(base_url + RUN, method="PATCH",
                                           body=json.dumps({"description": "x"}), raise_error=False)
        assert_api_error(response, 403, mentions="XSRF")

    @pytest.mark.gen_test
    async def test_patch_unknown_run(self, http_client, base_url):
        response = await http_client.fetch(base_url + "/api/experiments/vision/runs/nope", method="PATCH",
                                           headers=XSRF, body=json.dumps({"description": "x"}),
                                           raise_error=False)
        assert_api_error(response, 404)

    @pytest.mark.gen_test
    async def test_body_over_limit(self, http_client, base_url):
        body = json.dumps({"description": "x" * 70_000})
        response = await http_client.fetch(base_url + RUN, method="PATCH", headers=XSRF, body=body,
                                           raise_error=False)
        assert_api_error(response, 413)

    @pytest.mark.gen_test
    async def test_page_sets_xsrf_cookie(self, http_client, base_url):
        response = await http_client.fetch(base_url + "/")
        assert "_xsrf=" in response.headers.get("Set-Cookie", "")

    @pytest.mark.gen_test
    async def test_write_error_loses_nothing(self, http_client, base_url, store_root):
        folder = os.path.join(store_root, "vision", "baseline")
        path = os.path.join(folder, "run.yaml")
        with open(path, "rb") as f:
            before = f.read()
        os.chmod(folder, 0o500)
        try:
            if os.access(folder, os.W_OK):
                pytest.skip("running as root: folder permissions do not stop writes")
            response = await http_client.fetch(base_url + RUN, method="PATCH", headers=XSRF,
                                               body=json.dumps({"description": "x"}), raise_error=False)
        finally:
            os.chmod(folder, 0o755)
        assert response.code in (403, 500)
        with open(path, "rb") as f:
            assert f.read() == before


class TestReadOnly:
    @pytest.fixture
    def server_config(self) -> dict:
        return {"read_only": True}

    @pytest.mark.gen_test
    @pytest.mark.parametrize("method, path, body", [
        ("PATCH", RUN, {"description": "x"}),
        ("PATCH", "/api/experiments/vision", {"description": "x"}),
        ("POST", "/api/jupyter/spawn", {"experiment": "vision", "run": "baseline"}),
    ])
    async def test_writes_refused(self, http_client, base_url, method, path, body):
        response = await http_client.fetch(base_url + path, method=method, headers=XSRF,
                                           body=json.dumps(body), raise_error=False)
        assert_api_error(response, 403, mentions="read-only")

    @pytest.mark.gen_test
    async def test_server_reports_read_only(self, http_client, base_url):
        server = strict_json((await http_client.fetch(base_url + "/api/server")).body)
        assert server["read_only"] is True


@pytest.mark.gen_test(timeout=30)
async def test_patch_while_logger_writes(http_client, base_url, store_root):
    """The logger's own fields survive an edit made while it rewrites run.yaml."""
    run = new_run(store_root, "vision", "busy", heartbeat_interval_secs=1)
    stop = threading.Event()

    def train():
        step = 0
        while not stop.is_set():
            run.log_vector({"loss": 1.0 / (step + 1)}, step=step)
            run.log_scalar("seen", float(step))
            step += 1
            time.sleep(0.002)

    thread = threading.Thread(target=train, daemon=True)
    thread.start()
    try:
        for attempt in range(20):
            response = await http_client.fetch(
                base_url + "/api/experiments/vision/runs/busy", method="PATCH", headers=XSRF,
                body=json.dumps({"description": "edit %d" % attempt}), raise_error=False)
            assert response.code in (200, 503), response.body
            if response.code == 200:
                details = strict_json(response.body)
                assert details["status"] == "RUNNING"
                assert details["started_at"]
    finally:
        stop.set()
        thread.join(10)
        run.close()
    with open(os.path.join(store_root, "vision", "busy", "run.yaml")) as f:
        final = yaml.safe_load(f)
    assert final["status"] == "FINISHED"
    assert final["started_at"]


@pytest.mark.gen_test
async def test_patch_malformed_yaml_is_422(http_client, base_url, store_root):
    path = os.path.join(store_root, "vision", "baseline", "run.yaml")
    with open(path, "w") as f:
        f.write("status: [unclosed\n")
    os.utime(path, (time.time() - 60, time.time() - 60))
    response = await http_client.fetch(base_url + RUN, method="PATCH", headers=XSRF,
                                       body=json.dumps({"description": "x"}), raise_error=False)
    assert_api_error(response, 422, mentions="fix it by hand")
    with open(path) as f:
        assert f.read() == "status: [unclosed\n"


class TestTokenOnUnknownRoute:
    @pytest.fixture
    def server_config(self) -> dict:
        return {"token": TOKEN}

    @pytest.mark.gen_test
    async def test_unknown_route_needs_token(self, http_client, base_url):
        response = await http_client.fetch(base_url + "/api/nope", raise_error=False)
        assert_api_error(response, 403)
