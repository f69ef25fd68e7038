"""Rules for names and relative paths that come from a request.

A name in a URL is one path segment. A relative path is a list of such
segments. Anything that could step outside the folder it names is rejected
here, before the filesystem is touched.
"""

from __future__ import annotations

import os

#: Folders inside an experiment that are never runs.
IGNORED_RUN_NAMES = frozenset({"artifacts", "__pycache__"})


class InvalidName(ValueError):
    """A name or path from a request that can never name an entry of the store."""


def check_name(name: str, what: str) -> str:
    """Return ``name`` if it is a valid single path segment; raise InvalidName."""
    if not name:
        raise InvalidName("%s name is empty" % what)
    if name in (".", ".."):
        raise InvalidName("%s name %s is not allowed" % (what, shown(name)))
    for char, description in (("/", "a slash"), ("\\", "a backslash"), ("\x00", "a NUL character")):
        if char in name:
            raise InvalidName("%s name %s contains %s" % (what, shown(name), description))
    return name


def shown(text: str) -> str:
    """Return ``text`` in single quotes for a message, with unprintable characters escaped.

    Unlike ``repr``, it leaves backslashes as they are, so a message about one
    shows the name as it was sent.
    """
    return "'%s'" % "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


def split_relative_path(path: str) -> list[str]:
    """Split a relative file path into checked segments; raise InvalidName."""
    if not path:
        raise InvalidName("file path is empty")
    if path.startswith("/"):
        raise InvalidName("file path %s must be relative" % shown(path))
    for char, what in (("\\", "a backslash"), ("\x00", "a NUL character")):
        if char in path:
            raise InvalidName("file path %s contains %s" % (shown(path), what))
    parts = path.split("/")
    for part in parts:
        if part in ("", ".", ".."):
            raise InvalidName("file path %s contains an empty, '.' or '..' segment" % shown(path))
    return parts


def is_experiment_name(name: str) -> bool:
    """Whether a folder in the store root may be an experiment (hidden ones are not)."""
    return not name.startswith(".") and is_utf8(name)


def is_run_name(name: str) -> bool:
    """Return whether a folder in an experiment may be a run."""
    return not name.startswith(".") and name not in IGNORED_RUN_NAMES and is_utf8(name)


def is_utf8(name: str) -> bool:
    """Return True if a name read from the disk is valid UTF-8.

    Python decodes other bytes as lone surrogates. Such a name can be neither
    written in JSON nor named in a URL, so the store does not list it.
    """
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def is_inside(path: str, folder: str) -> bool:
    """Whether ``path``, with symlinks resolved, lies inside ``folder`` (also resolved)."""
    real_path = os.path.realpath(path)
    real_folder = os.path.realpath(folder)
    return real_path == real_folder or real_path.startswith(real_folder.rstrip(os.sep) + os.sep)


def is_link_outside(path: str, folder: str) -> bool:
    """Return True if ``path`` is a symlink that resolves outside ``folder`` (one ``lstat`` if not a link)."""
    return os.path.islink(path) and not is_inside(path, folder)
