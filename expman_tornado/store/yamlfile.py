"""Safe YAML reading for run.yaml, config.yaml and experiment.yaml."""

from __future__ import annotations

import ast
import math
import re
from typing import Any

import yaml

from .files import ParseError
from .filesystem import LOCAL, LocalFilesystem, ObjectFilesystem

#: Files larger than this are not parsed (reported like a malformed file).
MAX_YAML_BYTES = 1 << 20

#: Upper bound on the nodes a document may expand to, aliases counted each time
#: they are used, so an alias bomb of a few bytes cannot exhaust the server.
MAX_EXPANDED_NODES = 200_000

#: Longest string that is tried as a Python literal (a nested param).
MAX_LITERAL_CHARS = 100_000

_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

#: The implicit types of the YAML 1.2 core schema, as (tag, pattern, first
#: characters). The expman logger writes YAML 1.2: ``yes``, ``on`` and ``1:30``
#: are strings there and ``1e-5`` is a number, where PyYAML's YAML 1.1 rules read
#: ``yes`` as true, ``1:30`` as 90 and ``1e-5`` as a string. Timestamps stay the
#: strings the writer wrote, and ``<<`` is an ordinary key.
CORE_SCHEMA = (
    ("tag:yaml.org,2002:null", r"^(?:~|null|Null|NULL|)$", "~nN"),
    ("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("tag:yaml.org,2002:int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789"),
    ("tag:yaml.org,2002:float",
     r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
     "-+.0123456789"),
)


def _add_core_schema(cls: type) -> None:
    cls.yaml_implicit_resolvers = {}
    for tag, pattern, first in CORE_SCHEMA:
        cls.add_implicit_resolver(tag, re.compile(pattern), list(first) + ([""] if tag.endswith("null") else []))


def _construct_core_int(loader: Any, node: Any) -> int:
    """Read a YAML 1.2 integer: ``017`` is seventeen, ``0o17`` fifteen."""
    text = loader.construct_scalar(node)
    if text.startswith("0o"):
        return int(text[2:], 8)
    if text.startswith("0x"):
        return int(text[2:], 16)
    return int(text)


class _StoreLoader(_BaseLoader):  # type: ignore[misc,valid-type]
    """A safe loader with the YAML 1.2 core schema (:data:`CORE_SCHEMA`)."""


_add_core_schema(_StoreLoader)
_StoreLoader.add_constructor("tag:yaml.org,2002:int", _construct_core_int)


class _StoreDumper(yaml.SafeDumper):
    """A safe dumper that quotes every string a YAML 1.1 or a YAML 1.2 reader would take for another type.

    Plain ``1e30`` is a string to PyYAML's defaults but a number to the logger
    and to this package. Plain ``yes`` is the other way round. Quoted, each
    reads back as the string it was.
    """


for _tag, _pattern, _first in CORE_SCHEMA:
    _StoreDumper.add_implicit_resolver(_tag, re.compile(_pattern), list(_first))
# YAML 1.1 itself also reads y and n as booleans, though PyYAML does not.
_StoreDumper.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:y|Y|n|N)$"), list("yYnN"))

#: Characters that YAML reads as line breaks, so that a reader folds them in a
#: plain or single-quoted text. A text with one is written double-quoted, where
#: they are escaped (\N, \L, \P).
_YAML_LINE_BREAKS = ("\x85", "\u2028", "\u2029")


def _represent_text(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = '"' if any(mark in text for mark in _YAML_LINE_BREAKS) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_StoreDumper.add_representer(str, _represent_text)


def dump_yaml_mapping(mapping: dict) -> str:
    """Write a mapping as block YAML that both YAML 1.1 and YAML 1.2 readers read back unchanged."""
    return yaml.dump(mapping, Dumper=_StoreDumper, sort_keys=False, allow_unicode=True, default_flow_style=False)


def parse_yaml_file(path: str, filesystem: LocalFilesystem | ObjectFilesystem = LOCAL) -> Any:
    """Parse one YAML file; raise ParseError for anything that is not whole, safe YAML."""
    data = filesystem.read_bytes(path, 0, MAX_YAML_BYTES + 1)
    if len(data) > MAX_YAML_BYTES:
        raise ParseError("larger than %d bytes, not parsed" % MAX_YAML_BYTES)
    if not data.strip():
        raise ParseError("empty file")
    try:
        text = data.decode("utf-8")
        value = yaml.load(text, Loader=_StoreLoader)  # noqa: S506 (a safe loader)
    except (yaml.YAMLError, ValueError, OverflowError, RecursionError) as exc:
        # ValueError includes invalid UTF-8 and a decimal integer past Python's 4300-digit limit.
        raise ParseError(_first_line(exc)) from None
    _check_expanded_size(value)
    return value


def parse_yaml_mapping(path: str, filesystem: LocalFilesystem | ObjectFilesystem = LOCAL) -> dict:
    value = parse_yaml_file(path, filesystem)
    if not isinstance(value, dict):
        raise ParseError("expected a mapping at the top level, found %s" % type(value).__name__)
    return value


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _check_expanded_size(value: Any) -> None:
    budget = MAX_EXPANDED_NODES
    stack = [value]
    while stack:
        node = stack.pop()
        budget -= 1
        if budget < 0:
            raise ParseError("expands to more than %d nodes (YAML aliases)" % MAX_EXPANDED_NODES)
        if isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def read_back_literals(value: Any) -> Any:
    """Turn strings that hold a Python dict or list literal back into that structure.

    expman-rs 1.3 stores a nested param as its Python ``repr``, e.g.
    ``"{'name': 'adamw', 'wd': 0.01}"``. Only ``ast.literal_eval`` reads it, never
    ``eval``; a string that is not a dict or list literal stays a string.
    """
    if isinstance(value, dict):
        return {key: read_back_literals(item) for key, item in value.items()}
    if isinstance(value, list):
        return [read_back_literals(item) for item in value]
    if isinstance(value, str) and value[:1] in ("{", "[") and len(value) <= MAX_LITERAL_CHARS:
        try:
            parsed = ast.literal_eval(value)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            return value
        if isinstance(parsed, (dict, list)):
            return read_back_literals(_jsonable(parsed))
    return value


def _jsonable(value: Any) -> Any:
    """Make a literal's keys strings and its tuples and sets lists."""
    if isinstance(value, dict):
        return {_key_text(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(item) for item in value]
    if isinstance(value, (bytes, complex)):
        return repr(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return json_integer(value)
    return value


def json_integer(value: int) -> int | str:
    """Return an integer that fits the JSON encoder, or else its text.

    orjson 3.13 raises TypeError outside [-2**63, 2**64), so such an integer becomes
    text: decimal, or hexadecimal past the 4300 digits Python converts by default.
    """
    if -(2**63) <= value < 2**64:
        return value
    try:
        return str(value)
    except ValueError:
        return hex(value)


def _key_text(key: Any) -> str:
    """Return a mapping key as text; ``null``, ``true`` and ``false`` keys keep their YAML spelling."""
    if key is None:
        return "null"
    if isinstance(key, bool):
        return "true" if key else "false"
    if isinstance(key, int):
        return str(json_integer(key))
    return str(key)


def flatten(mapping: dict, prefix: str = "") -> dict:
    """Flatten nested mappings into one level, joining keys with ``.``."""
    flat: dict = {}
    for key, value in mapping.items():
        name = "%s.%s" % (prefix, key) if prefix else str(key)
        if isinstance(value, dict) and value:
            flat.update(flatten(value, name))
        else:
            flat[name] = value
    return flat


def clean_for_json(value: Any) -> Any:
    """Give YAML values JSON-safe keys; dates and other scalars become strings."""
    if isinstance(value, dict):
        return {_key_text(key): clean_for_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [clean_for_json(item) for item in value]
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, int):
        return json_integer(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return str(value)
