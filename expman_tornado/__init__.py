"""expman-tornado: a Tornado server for experiments written by the expman logger."""

__version__ = "0.1.0"


def _jupyter_server_extension_points() -> list[dict]:
    """Tell Jupyter Server where the extension is (read when the server starts)."""
    from .jupyter.extension import ExpmanExtension

    return [{"module": "expman_tornado.jupyter.extension", "app": ExpmanExtension}]
