"""Edits of experiment.yaml and run.yaml: the only writes to the store besides notebooks.

The logger rewrites run.yaml in place while a run lives, so an edit re-reads
the file just before writing, merges its changes into what it read, and
replaces the file atomically (temporary file, fsync, rename). Every field it
does not change is written back as read, unknown keys included. The logger may
still overwrite the edited fields later with its own copy of them.
"""

from __future__ import annotations

import os
import time


from .files import SETTLING_SECONDS, ParseError
from .filesystem import LOCAL, LocalFilesystem, ObjectFilesystem
from .yamlfile import dump_yaml_mapping, parse_yaml_file

#: Fields a PATCH may change, per file, with their expected types.
EXPERIMENT_EDITS = {"display_name": str, "description": str, "tags": list}
RUN_EDITS = {"name": str, "description": str, "tags": list}

MAX_TEXT = 10_000
MAX_TAGS = 100
MAX_TAG = 200

#: How long an edit keeps re-reading a YAML file that the logger is halfway through rewriting.
READ_RETRY_SECONDS = 1.0


class InvalidEdit(ValueError):
    """A PATCH body that names an unknown field or gives a value of the wrong type."""


class UneditableFile(RuntimeError):
    """The file to edit is malformed and not being written: editing it would lose its content."""


class EditConflict(RuntimeError):
    """The file to edit could not be read whole in time (the writer keeps rewriting it)."""


def check_changes(body: object, allowed: dict[str, type]) -> dict:
    """Return the validated changes of a PATCH body; raise InvalidEdit naming the field."""
    if not isinstance(body, dict):
        raise InvalidEdit("request body must be a JSON object")
    changes = {}
    for field, value in body.items():
        if field not in allowed:
            raise InvalidEdit("field %r cannot be changed; the fields are %s"
                              % (field, ", ".join(allowed)))
        if allowed[field] is str:
            # A name cannot be removed, a description can (null).
            named = field in ("name", "display_name")
            if not isinstance(value, str) and (named or value is not None):
                raise InvalidEdit("field %r must be a %s" % (field, "non-empty string" if named else "string or null"))
            if isinstance(value, str) and len(value) > MAX_TEXT:
                raise InvalidEdit("field %r is longer than %d characters" % (field, MAX_TEXT))
            if named and not value.strip():
                raise InvalidEdit("field %r must be a non-empty string" % field)
        else:
            if not isinstance(value, list) or not all(isinstance(t, str) and t.strip() for t in value):
                raise InvalidEdit("field %r must be a list of non-empty strings" % field)
            if len(value) > MAX_TAGS or any(len(t) > MAX_TAG for t in value):
                raise InvalidEdit("field %r allows at most %d tags of %d characters"
                                  % (field, MAX_TAGS, MAX_TAG))
            value = list(dict.fromkeys(t.strip() for t in value))
        changes[field] = value
    if not changes:
        raise InvalidEdit("request body changes nothing; give one of %s" % ", ".join(allowed))
    return changes


def edit_yaml(path: str, changes: dict, filesystem: LocalFilesystem | ObjectFilesystem = LOCAL) -> None:
    """Merge ``changes`` into the mapping in ``path`` and replace the file atomically.

    On a local disk that is a temporary file, fsync and rename; on object
    storage one PUT of the whole object.
    """
    current = _read_current(path, filesystem)
    current.update(changes)
    text = dump_yaml_mapping(current)
    filesystem.write_atomic(path, text.encode("utf-8"))


def _read_current(path: str, filesystem: LocalFilesystem | ObjectFilesystem) -> dict:
    """Read the mapping to edit; a missing file is an empty one."""
    deadline = time.monotonic() + READ_RETRY_SECONDS
    while True:
        try:
            value = parse_yaml_file(path, filesystem)
        except FileNotFoundError:
            return {}
        except ParseError as exc:
            if not _is_settling(path, filesystem):
                raise UneditableFile("%s cannot be parsed (%s); fix it by hand before editing"
                                     % (os.path.basename(path), exc)) from None
            if time.monotonic() > deadline:
                raise EditConflict("%s cannot be read whole (%s); retry shortly"
                                   % (os.path.basename(path), exc)) from None
            time.sleep(0.05)
            continue
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise UneditableFile("%s does not hold a mapping; fix it by hand" % os.path.basename(path))
        return value


def _is_settling(path: str, filesystem: LocalFilesystem | ObjectFilesystem) -> bool:
    """Return whether a file changed so recently that its writer may still be rewriting it."""
    mtime = filesystem.mtime(path)
    return bool(mtime) and time.time() - mtime < SETTLING_SECONDS
