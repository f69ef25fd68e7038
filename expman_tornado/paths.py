"""Where the package's data files are, in a source checkout and once installed."""

from __future__ import annotations

import os

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def frontend_dir() -> str:
    """Return the folder of the built dashboard.

    Installed, it is the package's ``frontend_dist`` data folder; in a source
    checkout, the ``frontend_dist/`` folder beside the package.
    """
    candidates = [
        os.path.join(_PACKAGE_DIR, "frontend_dist"),
        os.path.join(os.path.dirname(_PACKAGE_DIR), "frontend_dist"),
    ]
    for candidate in candidates:
        if os.path.isfile(os.path.join(candidate, "index.html")):
            return candidate
    return candidates[-1]
