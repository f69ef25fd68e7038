"""URLs that the server builds: route patterns under a base URL, links in replies."""

from __future__ import annotations

from urllib.parse import quote


def url_path_join(*pieces: str) -> str:
    """Join URL path pieces with single slashes, keeping a leading and trailing one."""
    initial = pieces[0].startswith("/") if pieces else False
    final = pieces[-1].endswith("/") if pieces else False
    stripped = [piece.strip("/") for piece in pieces]
    result = "/".join(piece for piece in stripped if piece)
    if initial:
        result = "/" + result
    if final and result != "/":
        result += "/"
    return result or "/"


def api_url(base_url: str, experiment: str, run: str, *rest: str) -> str:
    """Return the URL of a run's route, each name percent-encoded as one segment."""
    segments = ["api", "experiments", quote(experiment, safe=""), "runs", quote(run, safe="")]
    segments.extend(quote(part, safe="/") for part in rest)
    return url_path_join(base_url, *segments)
