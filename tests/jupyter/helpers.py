"""Helpers of the extension tests: requests without the token, notebooks run by nbclient."""

from __future__ import annotations

import json
import os

import nbformat
from jupyter_server.utils import url_path_join
from nbclient import NotebookClient

#: Seconds one notebook cell may run in the test kernel.
CELL_TIMEOUT = 120


def spawn_body(experiment: str = "vision", **fields) -> str:
    """Return the JSON body of a spawn request (``run=…`` or ``runs=[…]``)."""
    return json.dumps({"experiment": experiment, **fields})


async def fetch_anonymous(client, base_url: str, *parts: str, **kwargs):
    """Send a request without the Jupyter token; errors and redirects are returned, not raised."""
    url = url_path_join(base_url, *parts)
    return await client.fetch(url, raise_error=False, follow_redirects=False, **kwargs)


#: A first cell that makes ``import matplotlib`` fail in the kernel, as if it were not installed.
HIDE_MATPLOTLIB = 'import sys\nsys.modules["matplotlib"] = sys.modules["matplotlib.pyplot"] = None'


async def run_notebook(path: str, prelude: str | None = None) -> nbformat.NotebookNode:
    """Validate the notebook at ``path``, run every cell in a python3 kernel and return it.

    ``prelude``, if given, runs first as a cell of its own that is not in the
    returned notebook. nbclient raises ``CellExecutionError``, with the cell's
    traceback, when a cell fails.
    """
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    if prelude is not None:
        notebook.cells.insert(0, nbformat.v4.new_code_cell(prelude))
    client = NotebookClient(notebook, timeout=CELL_TIMEOUT, kernel_name="python3",
                            resources={"metadata": {"path": os.path.dirname(path)}})
    await client.async_execute()
    if prelude is not None:
        del notebook.cells[0]
    return notebook


def images(cell: nbformat.NotebookNode) -> int:
    """Return how many PNG images a code cell showed."""
    return sum("image/png" in output.get("data", {}) for output in cell.get("outputs", []))


def output_text(cell: nbformat.NotebookNode) -> str:
    """Return the text a code cell showed: streams and the plain-text form of results."""
    pieces = []
    for output in cell.get("outputs", []):
        if output["output_type"] == "stream":
            pieces.append(output["text"])
        elif "data" in output:
            pieces.append(output["data"].get("text/plain", ""))
    return "\n".join(pieces)
