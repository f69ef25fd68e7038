"""The OpenAPI 3.1 document of the API, served at ``GET /api/openapi.json``.

The document lists the routes of the built-in handler groups that this server
serves, so a disabled group's routes are left out. Routes of extra groups are
not described.
"""

from __future__ import annotations

from typing import Any

from tornado.routing import PathMatches, Rule
from tornado.web import Application

from .. import __version__
from ..store.metadata import STATUSES
from . import routes
from .base import ApiHandler
from .urls import url_path_join

JSON = "application/json"
SSE = "text/event-stream"

NULLABLE_STRING = {"type": ["string", "null"]}
STRINGS = {"type": "array", "items": {"type": "string"}}
OBJECT = {"type": "object"}


def ref(name: str) -> dict:
    return {"$ref": "#/components/schemas/%s" % name}


def obj(required: dict[str, Any], **optional: Any) -> dict:
    """Return an object schema with required properties; other properties are allowed."""
    return {"type": "object", "required": list(required), "properties": {**required, **optional}}


RUN_FIELDS = {
    "name": {"type": "string"},
    "experiment": {"type": "string"},
    "status": {"enum": [*STATUSES, None], "description": "null when run.yaml is missing or unreadable"},
    "started_at": NULLABLE_STRING,
    "finished_at": NULLABLE_STRING,
    "duration_secs": {"type": ["number", "null"]},
    "description": NULLABLE_STRING,
    "tags": STRINGS,
    "scalars": OBJECT,
    "vectors": OBJECT,
    "language": NULLABLE_STRING,
    "env_path": NULLABLE_STRING,
    "group": NULLABLE_STRING,
    "rank": {"type": ["integer", "null"]},
    "heartbeat_at": NULLABLE_STRING,
}

EXPERIMENT_FIELDS = {
    "display_name": {"type": "string"},
    "description": NULLABLE_STRING,
    "tags": STRINGS,
    "project": NULLABLE_STRING,
}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "additionalProperties": False,
        "properties": {
            "error": {
                "type": "object",
                "required": ["status", "message"],
                "additionalProperties": False,
                "properties": {"status": {"type": "integer"}, "message": {"type": "string"}},
            }
        },
    },
    "ExperimentMetadata": obj(EXPERIMENT_FIELDS),
    "Experiment": obj({
        "id": {"type": "string"},
        **EXPERIMENT_FIELDS,
        "runs_count": {"type": "integer", "minimum": 0},
        "active_runs": {"type": "integer", "minimum": 0},
        "last_activity": NULLABLE_STRING,
    }),
    "RunMetadata": obj({"id": {"type": "string"}, **RUN_FIELDS}),
    "RunSummary": obj({
        "id": {"type": "string"},
        **RUN_FIELDS,
        "stale": {"type": "boolean"},
        "params": OBJECT,
        "metrics": {"type": "object", "description": "the last non-null value of each metric"},
    }),
    "RunDetails": obj({
        "id": {"type": "string"},
        **RUN_FIELDS,
        "stale": {"type": "boolean"},
        "config": OBJECT,
        "columns": {"type": "array", "items": obj({"name": {"type": "string"}, "type": {"type": "string"}})},
        "rows": {"type": ["integer", "null"], "description": "null when the metric files cannot be read"},
        "artifacts_count": {"type": "integer", "minimum": 0},
        "logs": {"type": "array", "items": {"enum": ["run.log", "console.log"]}},
        "unreadable": {
            "type": "object", "additionalProperties": {"type": "string"},
            "description": "files of the run that cannot be parsed and have no good copy, by name, with the reason",
        },
    }),
    "MetricRow": obj(
        {"step": {"type": ["integer", "null"]}, "timestamp": NULLABLE_STRING},
    ),
    "MetricRows": {"type": "array", "items": ref("MetricRow")},
    "MetricColumns": {
        "type": "object",
        "required": ["step", "timestamp"],
        "additionalProperties": {"type": "array"},
        "description": "one list per column (format=columnar)",
    },
    "Histograms": {
        "type": "object",
        "description": "per tag, the histograms over steps",
        "additionalProperties": {"type": "array", "items": obj({
            "step": {"type": ["integer", "null"]},
            "edges": {"type": "array", "items": {"type": ["number", "null"]}},
            "counts": {"type": "array", "items": {"type": ["number", "null"]}},
        })},
    },
    "MediaEntry": obj({
        "tag": NULLABLE_STRING,
        "step": {"type": ["integer", "null"]},
        "file": {"type": "string"},
        "url": {"type": "string"},
        "mime": {"type": "string"},
        "bytes": {"type": ["integer", "null"]},
        "logged_at": NULLABLE_STRING,
    }),
    "Artifact": obj({
        "path": {"type": "string"},
        "name": {"type": "string"},
        "size": {"type": "integer", "minimum": 0},
        "ext": {"type": "string"},
        "mime": {"type": "string"},
        "modified": {"type": "string"},
        "is_default": {"type": "boolean"},
        "url": {"type": "string"},
    }),
    "Stats": obj({name: {"type": "integer", "minimum": 0}
                  for name in ("experiments", "runs", "active", "stale", "storage_bytes")}),
    "Server": obj({
        "version": {"type": "string"},
        "mode": {"enum": ["standalone", "extension"]},
        "watcher": NULLABLE_STRING,
        "read_only": {"type": "boolean"},
        "live": {"type": "boolean"},
        "subscribers": {"type": "integer", "minimum": 0},
        "store": {"type": "string"},
    }),
    "ExperimentEdit": {
        "type": "object",
        "additionalProperties": False,
        "properties": {"display_name": {"type": "string"}, "description": NULLABLE_STRING, "tags": STRINGS},
    },
    "RunEdit": {
        "type": "object",
        "additionalProperties": False,
        "properties": {"name": {"type": "string"}, "description": NULLABLE_STRING, "tags": STRINGS},
    },
    "SpawnRequest": {
        "type": "object",
        "required": ["experiment"],
        "properties": {"experiment": {"type": "string"}, "run": {"type": "string"}, "runs": STRINGS},
        "description": "exactly one of run and runs",
    },
    "Notebook": obj({"url": {"type": "string"}, "path": {"type": "string"}, "mode": {"type": "string"}}),
    "JupyterStatus": obj({
        "running": {"type": "boolean"},
        "url": NULLABLE_STRING,
        "pid": {"type": ["integer", "null"]},
    }),
}


def path_parameter(name: str, description: str) -> dict:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": {"type": "string"}}


def query_parameter(name: str, description: str, schema: dict | None = None,
                    required: bool = False) -> dict:
    return {"name": name, "in": "query", "required": required, "description": description,
            "schema": schema or {"type": "string"}}


EXPERIMENT = path_parameter("experiment", "experiment name, one percent-encoded path segment")
RUN = path_parameter("run", "run name, one percent-encoded path segment")
FILE_PATH = path_parameter("path", "file path relative to the folder; may contain '/'")
INTEGER = {"type": "integer"}
TAGS = {"name": "tag", "in": "query", "required": False, "description": "only these tags (repeatable)",
        "schema": STRINGS, "style": "form", "explode": True}
ROW_PARAMETERS = [
    query_parameter("since_step", "only rows with step > N", INTEGER),
    query_parameter("until_step", "only rows with step <= M", INTEGER),
    query_parameter("columns", "comma-separated metric columns to send"),
    query_parameter("max_points", "at most N points per column, shape kept (0: all rows)",
                    {"type": "integer", "minimum": 0}),
    query_parameter("format", "body format", {"enum": ["json", "columnar", "csv", "arrow", "parquet"]}),
]
FILE_PARAMETERS = [
    query_parameter("download", "1 adds Content-Disposition: attachment"),
    {"name": "Range", "in": "header", "required": False, "schema": {"type": "string"},
     "description": "HTTP byte range"},
]
BINARY = {"type": "string", "contentMediaType": "application/octet-stream"}
ERROR_RESPONSE = {"description": "error", "content": {JSON: {"schema": ref("Error")}}}


def json_response(schema: dict, description: str = "OK") -> dict:
    return {"200": {"description": description, "content": {JSON: {"schema": schema}}}}


def operation(operation_id: str, summary: str, responses: dict, parameters: list | None = None,
              tags: tuple[str, ...] = (), body: str | None = None) -> dict:
    """Return an OpenAPI operation; every operation can also reply with the JSON error body."""
    result: dict[str, Any] = {
        "operationId": operation_id,
        "summary": summary,
        "responses": {**responses, "default": ERROR_RESPONSE},
    }
    if tags:
        result["tags"] = list(tags)
    if parameters:
        result["parameters"] = parameters
    if body:
        result["requestBody"] = {"required": True, "content": {JSON: {"schema": ref(body)}}}
    return result


def stream_operation(operation_id: str, summary: str, parameters: list) -> dict:
    responses = {"200": {"description": "Server-Sent Events",
                         "content": {SSE: {"schema": {"type": "string"}}}}}
    return operation(operation_id, summary, responses, parameters, tags=("streams",))


def file_operation(operation_id: str, summary: str, parameters: list) -> dict:
    responses = {
        # No schema: the file is sent as it is, in the media type of its name.
        "200": {"description": "the file", "content": {"*/*": {}}},
        "206": {"description": "the requested byte range", "content": {"*/*": {}}},
        "304": {"description": "not modified (If-None-Match)"},
    }
    return operation(operation_id, summary, responses, parameters + FILE_PARAMETERS, tags=("files",))


RUN_PARAMETERS = [EXPERIMENT, RUN]
METRICS_RESPONSES = {
    "200": {
        "description": "metric rows",
        "content": {
            JSON: {"schema": {"anyOf": [ref("MetricRows"), ref("MetricColumns")]}},
            "text/csv": {"schema": {"type": "string"}},
            "application/vnd.apache.arrow.stream": {"schema": BINARY},
            "application/vnd.apache.parquet": {"schema": BINARY},
        },
    }
}
WRITE_NOTE = "needs the XSRF check (X-XSRFToken header) or the token header; 403 in read-only mode"

#: ``(route pattern, OpenAPI path, path item)`` for every built-in API route.
PATHS: list[tuple[str, str, dict]] = [
    (routes.EXPERIMENTS, "/api/experiments", {
        "get": operation("listExperiments", "Every experiment, sorted by id",
                         json_response({"type": "array", "items": ref("Experiment")})),
    }),
    (routes.EXPERIMENT, "/api/experiments/{experiment}", {
        "get": operation("getExperiment", "One experiment", json_response(ref("Experiment")),
                         [EXPERIMENT]),
        "patch": operation("editExperiment", "Change display_name, description or tags; " + WRITE_NOTE,
                           json_response(ref("Experiment")), [EXPERIMENT], body="ExperimentEdit"),
    }),
    (routes.RUNS, "/api/experiments/{experiment}/runs", {
        "get": operation("listRuns", "Every run of an experiment, newest started_at first",
                         json_response({"type": "array", "items": ref("RunSummary")}),
                         [EXPERIMENT,
                          query_parameter("metrics", "comma-separated metrics to keep in scalars and metrics"),
                          query_parameter("q", "run query")]),
    }),
    (routes.RUN, "/api/experiments/{experiment}/runs/{run}", {
        "get": operation("getRun", "A run's details", json_response(ref("RunDetails")), RUN_PARAMETERS),
        "patch": operation("editRun", "Change name, description or tags; " + WRITE_NOTE,
                           json_response(ref("RunDetails")), RUN_PARAMETERS, body="RunEdit"),
    }),
    (routes.METRICS, "/api/experiments/{experiment}/runs/{run}/metrics", {
        "get": operation("getMetrics", "The run's metric rows", METRICS_RESPONSES,
                         RUN_PARAMETERS + ROW_PARAMETERS),
    }),
    (routes.SYSTEM, "/api/experiments/{experiment}/runs/{run}/system", {
        "get": operation("getSystemMetrics", "The run's system metrics", METRICS_RESPONSES,
                         RUN_PARAMETERS + ROW_PARAMETERS),
    }),
    (routes.HISTOGRAMS, "/api/experiments/{experiment}/runs/{run}/histograms", {
        "get": operation("getHistograms", "The run's histograms by tag, at most max_steps per tag",
                         json_response(ref("Histograms")),
                         RUN_PARAMETERS + [TAGS, query_parameter(
                             "max_steps", "at most N steps per tag, evenly spread (0: all)",
                             {"type": "integer", "minimum": 0})]),
    }),
    (routes.MEDIA, "/api/experiments/{experiment}/runs/{run}/media", {
        "get": operation("listMedia", "The entries of media.jsonl",
                         json_response({"type": "array", "items": ref("MediaEntry")}),
                         RUN_PARAMETERS + [TAGS]),
    }),
    (routes.ARTIFACTS, "/api/experiments/{experiment}/runs/{run}/artifacts", {
        "get": operation("listArtifacts", "Files under artifacts/ and the run's own files",
                         json_response({"type": "array", "items": ref("Artifact")}), RUN_PARAMETERS),
    }),
    (routes.ARTIFACT_FILE, "/api/experiments/{experiment}/runs/{run}/artifacts/{path}", {
        "get": file_operation("getArtifact", "A file under the run's artifacts/", RUN_PARAMETERS + [FILE_PATH]),
    }),
    (routes.RUN_FILE, "/api/experiments/{experiment}/runs/{run}/files/{path}", {
        "get": file_operation("getRunFile", "A file in the run folder", RUN_PARAMETERS + [FILE_PATH]),
    }),
    (routes.LOG, "/api/experiments/{experiment}/runs/{run}/logs/{name}", {
        "get": operation(
            "getLog", "run.log or console.log as UTF-8 text",
            {"200": {"description": "the log", "content": {"text/plain": {"schema": {"type": "string"}}}}},
            RUN_PARAMETERS + [
                {"name": "name", "in": "path", "required": True, "schema": {"enum": ["run.log", "console.log"]}},
                query_parameter("tail", "only the last N lines", {"type": "integer", "minimum": 0}),
            ]),
    }),
    (routes.STATS, "/api/stats", {
        "get": operation("getStats", "Store totals", json_response(ref("Stats"))),
    }),
    (routes.SERVER, "/api/server", {
        "get": operation("getServer", "What this server is", json_response(ref("Server"))),
    }),
    (routes.OPENAPI, "/api/openapi.json", {
        "get": operation("getOpenApi", "This document", json_response(OBJECT)),
    }),
    (routes.RUN_LIVE, "/api/experiments/{experiment}/runs/{run}/live", {
        "get": stream_operation("streamRun", "A run's changes: Snapshot, MetricsUpdated, LogMessage, …",
                                RUN_PARAMETERS + [query_parameter(
                                    "since_step", "start with the rows after step N (-1: all)",
                                    {"type": "integer", "minimum": -1}), query_parameter(
                                    "last_event_id", "resume after the event with this id, for clients "
                                    "that cannot send the Last-Event-ID header (which wins)", {"type": "string"})]),
    }),
    (routes.STORE_LIVE, "/api/live", {
        "get": stream_operation("streamStore", "Experiments and runs created or deleted, status changes", []),
    }),
    (routes.JUPYTER_SPAWN, "/api/jupyter/spawn", {
        "post": operation("spawnNotebook", "Write a notebook for runs and return its URL; " + WRITE_NOTE,
                          json_response(ref("Notebook")), tags=("jupyter",), body="SpawnRequest"),
    }),
    (routes.JUPYTER_STATUS, "/api/jupyter/status", {
        "get": operation("getJupyterStatus", "The notebook server", json_response(ref("JupyterStatus")),
                         tags=("jupyter",)),
    }),
    (routes.JUPYTER_STOP, "/api/jupyter/stop", {
        "post": operation("stopJupyter", "Stop the standalone server's Jupyter child; " + WRITE_NOTE,
                          json_response(ref("JupyterStatus")), tags=("jupyter",)),
    }),
    # The routes of the Rust expman-rs server.
    (routes.EXPERIMENT_METADATA, "/api/experiments/{experiment}/metadata", {
        "get": operation("getExperimentMetadata", "The experiment.yaml fields",
                         json_response(ref("ExperimentMetadata")), [EXPERIMENT], tags=("compat",)),
    }),
    (routes.RUN_METADATA, "/api/experiments/{experiment}/runs/{run}/metadata", {
        "get": operation("getRunMetadata", "id and the run.yaml fields", json_response(ref("RunMetadata")),
                         RUN_PARAMETERS, tags=("compat",)),
    }),
    (routes.RUN_CONFIG, "/api/experiments/{experiment}/runs/{run}/config", {
        "get": operation("getRunConfig", "config.yaml as written", json_response(OBJECT),
                         RUN_PARAMETERS, tags=("compat",)),
    }),
    (routes.ARTIFACT_CONTENT, "/api/experiments/{experiment}/runs/{run}/artifacts/content", {
        "get": file_operation(
            "getArtifactContent", "A file by its listing path: under artifacts/, else in the run folder",
            RUN_PARAMETERS + [query_parameter("path", "path as the artifacts listing gives it",
                                              required=True)]),
    }),
    (routes.LOG_STREAM, "/api/experiments/{experiment}/runs/{run}/log/stream", {
        "get": stream_operation("streamLog", "The log's text, whole and then as it grows",
                                RUN_PARAMETERS + [query_parameter(
                                    "file", "run.log (default) or console.log",
                                    {"enum": ["run.log", "console.log"]})]),
    }),
    (routes.VECTORS_STREAM, "/api/run/{experiment}/{run}/stream/vectors", {
        "get": stream_operation("streamVectors", "Unnamed events, each a JSON list of new metric rows",
                                RUN_PARAMETERS),
    }),
]


def served_patterns(application: Application) -> list[str]:
    """Return the regular expressions of every path rule of an application, nested routers included."""
    patterns = []
    pending: list[Rule] = list(application.default_router.rules) + list(application.wildcard_router.rules)
    while pending:
        rule = pending.pop()
        if isinstance(rule.matcher, PathMatches):
            patterns.append(rule.matcher.regex.pattern)
        nested = getattr(rule.target, "rules", None)
        if nested:
            pending.extend(nested)
    return patterns


def build_document(base_url: str, patterns: list[str]) -> dict:
    """Return the OpenAPI document of the routes among ``patterns``, the server at ``base_url``."""
    paths = {}
    for pattern, path, item in PATHS:
        # A served route is the pattern after an escaped base URL, with Tornado's "$" at the end.
        suffix = pattern + "$"
        if any(served.endswith(suffix) for served in patterns):
            paths[path] = item
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "expman-tornado",
            "version": __version__,
            "description": "Experiments, runs, metrics, artifacts and logs of an expman store, "
                           "and Server-Sent Event streams of their changes. Names in paths are one "
                           "percent-encoded segment each; a '+' stays a plus.",
        },
        "servers": [{"url": url_path_join(base_url, "").rstrip("/") or "/"}],
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "tokenHeader": {"type": "apiKey", "in": "header", "name": "Authorization",
                                "description": "'token <token>', when the server has a token"},
                "tokenQuery": {"type": "apiKey", "in": "query", "name": "token"},
            },
        },
        "security": [{}, {"tokenHeader": []}, {"tokenQuery": []}],
    }


class OpenApiHandler(ApiHandler):
    """``GET /api/openapi.json``: the OpenAPI document of the routes this server serves."""

    def get(self) -> None:
        patterns = served_patterns(self.application)
        self.write_json(build_document(self.context.base_url, patterns))


default_handlers = [(routes.OPENAPI, OpenApiHandler)]
