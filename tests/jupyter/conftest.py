"""Fixtures of the extension tests: a Jupyter Server with this package's extension enabled.

pytest-jupyter's fixtures are imported here, into this folder only, because its
``io_loop`` and ``http_server`` would replace pytest-tornado's for the rest of
the suite.
"""

from __future__ import annotations

import shutil

import pytest

from pytest_jupyter.jupyter_server import *  # noqa: F401,F403


@pytest.fixture
def store_root(jp_root_dir, real_store) -> str:
    """A copy of the real-logger store at ``experiments/`` under the Jupyter root."""
    root = str(jp_root_dir / "experiments")
    shutil.copytree(real_store, root)
    return root


@pytest.fixture
def expman_config(store_root) -> dict:
    """The ``ExpmanTornado`` traits of the extension; override it in a test module."""
    return {"store": store_root}


@pytest.fixture
def jp_server_config(expman_config) -> dict:
    """The Jupyter Server config: this package's extension on, with ``expman_config``."""
    return {
        "ServerApp": {"jpserver_extensions": {"expman_tornado": True}},
        "ExpmanTornado": expman_config,
    }
