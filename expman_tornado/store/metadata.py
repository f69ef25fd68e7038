"""The fields of run.yaml and experiment.yaml, checked and normalized."""

from __future__ import annotations

import math
import re
from datetime import datetime, timezone
from typing import Any

from .yamlfile import clean_for_json, json_integer

STATUSES = ("RUNNING", "FINISHED", "FAILED", "CRASHED")

RUN_FIELDS = (
    "name", "experiment", "status", "started_at", "finished_at", "duration_secs",
    "description", "tags", "scalars", "vectors", "language", "env_path", "group",
    "rank", "heartbeat_at",
)  # fmt: skip

EXPERIMENT_FIELDS = ("display_name", "description", "tags", "project")

_FRACTION = re.compile(r"(\.\d{6})\d+")


def run_fields(raw: dict | None, run_id: str, experiment_id: str) -> dict:
    """Return every run.yaml field, each null when missing, unreadable or mistyped.

    A status outside RUNNING, FINISHED, FAILED and CRASHED (a truncated
    ``RUNN``, say) is null, never a guess.
    """
    raw = raw if isinstance(raw, dict) else {}
    status = raw.get("status")
    fields = {
        "name": _text(raw.get("name")) or run_id,
        "experiment": _text(raw.get("experiment")) or experiment_id,
        "status": status if status in STATUSES else None,
        "started_at": _time_text(raw.get("started_at")),
        "finished_at": _time_text(raw.get("finished_at")),
        "duration_secs": _number(raw.get("duration_secs")),
        "description": _text(raw.get("description")),
        "tags": _tags(raw.get("tags")),
        "scalars": _mapping(raw.get("scalars")),
        "vectors": _mapping(raw.get("vectors")),
        "language": _text(raw.get("language")),
        "env_path": _text(raw.get("env_path")),
        "group": _text(raw.get("group")),
        "rank": _rank(raw.get("rank")),
        "heartbeat_at": _time_text(raw.get("heartbeat_at")),
    }
    return fields


def experiment_fields(raw: dict | None, experiment_id: str) -> dict:
    raw = raw if isinstance(raw, dict) else {}
    return {
        "display_name": _text(raw.get("display_name")) or experiment_id,
        "description": _text(raw.get("description")),
        "tags": _tags(raw.get("tags")),
        "project": _text(raw.get("project")),
    }


def parse_instant(value: Any) -> datetime | None:
    """Read an RFC 3339 / ISO 8601 time; a value without an offset means UTC."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str) and value:
        text = _FRACTION.sub(r"\1", value.strip())
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            return None
    else:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, (dict, list)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if _is_int(value):
        return str(json_integer(value))
    return value if isinstance(value, str) else str(value)


def _time_text(value: Any) -> str | None:
    if isinstance(value, datetime):
        return value.isoformat()
    return _text(value)


def _number(value: Any) -> float | int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, int):
        return value if json_integer(value) == value else None
    return value if math.isfinite(value) else None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _rank(value: Any) -> int | None:
    return value if _is_int(value) and json_integer(value) == value else None


def _tags(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(json_integer(tag)) if _is_int(tag) else str(tag)
                for tag in value if tag is not None and not isinstance(tag, (dict, list))]
    return []


def _mapping(value: Any) -> dict:
    return clean_for_json(value) if isinstance(value, dict) else {}
