"""frontend_dist/ must be built from the sources in frontend/ as they are now."""

from __future__ import annotations

import hashlib
import json
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FRONTEND = os.path.join(ROOT, "frontend")
BUILD_INFO = os.path.join(ROOT, "frontend_dist", "build-info.json")

# The same files and hash as frontend/build.mjs: SHA-256 over
# "<path>\0<sha256 of the file>\n" for each file, sorted by path.
SOURCE_FILES = ["build.mjs", "index.html", "package.json", "package-lock.json", "tsconfig.json"]
SOURCE_FOLDERS = ["src"]


def source_digests() -> dict[str, str]:
    paths = list(SOURCE_FILES)
    for folder in SOURCE_FOLDERS:
        for directory, _folders, files in os.walk(os.path.join(FRONTEND, folder)):
            for name in files:
                paths.append(os.path.relpath(os.path.join(directory, name), FRONTEND).replace(os.sep, "/"))
    digests = {}
    for path in sorted(paths):
        with open(os.path.join(FRONTEND, path), "rb") as f:
            digests[path] = hashlib.sha256(f.read()).hexdigest()
    return digests


def source_hash(digests: dict[str, str]) -> str:
    total = hashlib.sha256()
    for path, digest in digests.items():
        total.update(("%s\0%s\n" % (path, digest)).encode("utf-8"))
    return total.hexdigest()


def test_build_matches_sources():
    with open(BUILD_INFO, encoding="utf-8") as f:
        info = json.load(f)
    digests = source_digests()
    changed = sorted(path for path in set(digests) | set(info["files"]) if digests.get(path) != info["files"].get(path))
    assert changed == [], "frontend_dist/ is older than these sources; run 'npm run build' in frontend/"
    assert info["source_hash"] == source_hash(digests)


def test_built_page_keeps_base_url_marker():
    with open(os.path.join(ROOT, "frontend_dist", "index.html"), encoding="utf-8") as f:
        page = f.read()
    assert 'content="__EXPMAN_BASE_URL__"' in page
    assert 'src="__EXPMAN_BASE_URL__assets/' in page


def test_built_assets_exist():
    with open(BUILD_INFO, encoding="utf-8") as f:
        info = json.load(f)
    assert os.path.isfile(os.path.join(ROOT, "frontend_dist", "assets", info["script"]))
    assert os.path.isfile(os.path.join(ROOT, "frontend_dist", "assets", info["style"]))
