"""The polling watcher's pass (StoreScan): what it reports, and what it stats to find it.

The stores are written by the real logger. Runs count as quiet when their files
are a day old, which :func:`age` sets with ``os.utime``. Calls are counted by
wrapping ``os.stat`` and ``os.scandir`` for the length of one pass.
"""

from __future__ import annotations

import os
import shutil
import time

import pytest

from expman_tornado.live.watchers import StoreScan

from .stores import new_run

#: Upper bound on the seconds a test waits for the logger's background writer.
LOGGER_TIMEOUT = 20.0


def write_runs(root: str, experiment: str, count: int, artifacts: int = 0) -> list[str]:
    """Write ``count`` closed runs with the real logger; return their folders."""
    folders = []
    for number in range(count):
        run = new_run(root, experiment, "run-%03d" % number)
        run.log_params({"lr": 0.001 * (number + 1)})
        run.log_vector({"loss": 1.0 / (number + 1)}, step=0)
        run.close()
        folder = os.path.join(root, experiment, "run-%03d" % number)
        plots = os.path.join(folder, "artifacts", "plots")
        os.makedirs(plots, exist_ok=True)
        for index in range(artifacts):
            with open(os.path.join(plots, "plot-%02d.csv" % index), "w") as f:
                f.write("step,value\n0,%d\n" % index)
        folders.append(folder)
    return folders


def age(root: str, seconds: float = 86400.0) -> None:
    """Set the atime and mtime of every file and folder under ``root`` to ``seconds`` ago."""
    then = time.time() - seconds
    for folder, _, files in os.walk(root, topdown=False):
        for name in files:
            os.utime(os.path.join(folder, name), (then, then))
        os.utime(folder, (then, then))


def all_files(root: str) -> set[str]:
    """Return the files under ``root`` that a pass looks at: all but the logger's ``.run.lock``."""
    return {os.path.join(folder, name) for folder, _, files in os.walk(root) for name in files
            if name != ".run.lock"}


def all_folders(root: str) -> set[str]:
    return {folder for folder, _, _ in os.walk(root)}


def wait_until(condition, description: str) -> None:
    deadline = time.monotonic() + LOGGER_TIMEOUT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for %s" % description)
        time.sleep(0.02)


def counted_pass(scan: StoreScan, monkeypatch) -> tuple[list[str], list[str], list[str]]:
    """Run one pass; return the changed paths, the paths given to os.stat and those listed."""
    stats: list[str] = []
    listings: list[str] = []
    real_stat, real_scandir = os.stat, os.scandir

    def stat(path, *args, **kwargs):
        stats.append(os.fspath(path))
        return real_stat(path, *args, **kwargs)

    def scandir(path=".", *args, **kwargs):
        listings.append(os.fspath(path))
        return real_scandir(path, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(os, "stat", stat)
        patch.setattr(os, "scandir", scandir)
        changed = scan.scan()
    return changed, stats, listings


@pytest.fixture
def root(tmp_path) -> str:
    return str(tmp_path / "store")


# What a pass reports


def test_first_pass_reports_nothing(root):
    write_runs(root, "vision", 2)
    scan = StoreScan(root)
    assert scan.scan() == []
    assert scan.scan() == []


def test_appended_segment_of_live_run(root):
    run = new_run(root, "vision", "live", flush_interval_ms=20)
    segment = os.path.join(root, "vision", "live", "vectors-0000.arrow")
    try:
        run.log_vector({"loss": 1.0}, step=0)
        wait_until(lambda: os.path.exists(segment) and os.path.getsize(segment) > 0,
                   "the first flush")
        scan = StoreScan(root)
        scan.scan()
        size = os.path.getsize(segment)
        run.log_vector({"loss": 0.5}, step=1)
        wait_until(lambda: os.path.getsize(segment) > size, "the segment to grow")

        changed = scan.scan()
    finally:
        run.close()
    assert segment in changed


def test_log_append_to_recent_run_without_listing(root, monkeypatch):
    run = new_run(root, "vision", "recent")
    run.info("epoch 1 done")
    run.close()
    folder = os.path.join(root, "vision", "recent")
    scan = StoreScan(root)
    scan.scan()
    scan.scan()  # Lists again the folders the first pass found moving, if any.
    with open(os.path.join(folder, "run.log"), "a") as f:
        f.write("[2026-01-01T00:00:00Z] [INFO] appended by hand\n")

    changed, _, listings = counted_pass(scan, monkeypatch)
    assert changed == [os.path.join(folder, "run.log")]
    assert folder not in listings


def test_quiet_run_yaml_rewritten_in_place(root):
    folders = write_runs(root, "vision", 3)
    age(root)
    scan = StoreScan(root)
    scan.scan()
    run_yaml = os.path.join(folders[1], "run.yaml")
    inode = os.stat(run_yaml).st_ino
    with open(run_yaml, "a") as f:
        f.write("description: edited in place\n")
    assert os.stat(run_yaml).st_ino == inode

    changed = scan.scan()
    assert changed == [run_yaml]


def test_quiet_run_log_append_seen_by_sweep(root):
    folders = write_runs(root, "vision", 5)
    run_log = os.path.join(folders[2], "console.log")
    with open(run_log, "w") as f:
        f.write("epoch 1\n")
    age(root)
    scan = StoreScan(root, sweep_passes=3)
    scan.scan()
    with open(run_log, "a") as f:
        f.write("epoch 2\n")

    seen_after = None
    for number in range(1, 4):
        if run_log in scan.scan():
            seen_after = number
            break
    assert seen_after is not None


def test_new_artifact_three_folders_deep(root):
    folders = write_runs(root, "vision", 2)
    age(root)
    scan = StoreScan(root)
    scan.scan()
    artifacts = os.path.join(folders[0], "artifacts")
    deep = os.path.join(artifacts, "eval", "epoch-1", "images")
    os.makedirs(deep)
    with open(os.path.join(deep, "sample.txt"), "w") as f:
        f.write("a sample\n")

    changed = scan.scan()
    assert os.path.join(deep, "sample.txt") in changed
    assert os.path.join(artifacts, "eval") in changed
    assert all(path.startswith(artifacts + os.sep) for path in changed)


def test_new_artifact_in_existing_deep_folder(root):
    folders = write_runs(root, "vision", 2)
    deep = os.path.join(folders[1], "artifacts", "eval", "epoch-1", "images")
    os.makedirs(deep)
    age(root)
    scan = StoreScan(root)
    scan.scan()
    with open(os.path.join(deep, "sample.txt"), "w") as f:
        f.write("a sample\n")

    assert scan.scan() == [os.path.join(deep, "sample.txt")]


def test_deleted_run(root):
    folders = write_runs(root, "vision", 3)
    age(root)
    scan = StoreScan(root)
    scan.scan()
    removed = all_files(folders[1]) | all_folders(folders[1])
    shutil.rmtree(folders[1])

    changed = scan.scan()
    assert folders[1] in changed
    assert set(changed) == removed


def test_new_experiment(root):
    write_runs(root, "vision", 1)
    scan = StoreScan(root)
    scan.scan()
    folders = write_runs(root, "speech", 2)

    changed = scan.scan()
    assert os.path.join(root, "speech") in changed
    assert os.path.join(root, "speech", "experiment.yaml") in changed
    for folder in folders:
        assert folder in changed
        assert os.path.join(folder, "run.yaml") in changed
    assert scan.scan() == []


def test_deleted_experiment(root):
    write_runs(root, "vision", 1)
    write_runs(root, "speech", 2)
    scan = StoreScan(root)
    scan.scan()
    shutil.rmtree(os.path.join(root, "speech"))

    changed = scan.scan()
    assert os.path.join(root, "speech") in changed
    assert all(path.startswith(os.path.join(root, "speech")) for path in changed)


def test_new_media_file(root):
    run = new_run(root, "vision", "media")
    run.log_vector({"loss": 1.0}, step=0)
    run.close()
    media = os.path.join(root, "vision", "media", "media")
    os.makedirs(media)
    age(root)
    scan = StoreScan(root)
    scan.scan()
    with open(os.path.join(media, "sample-0.png"), "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")

    assert scan.scan() == [os.path.join(media, "sample-0.png")]


def test_hidden_names_skipped_above_artifacts(root):
    folders = write_runs(root, "vision", 1)
    scan = StoreScan(root)
    scan.scan()
    os.makedirs(os.path.join(root, ".trash"))
    with open(os.path.join(folders[0], ".run.yaml.tmp"), "w") as f:
        f.write("status: RUNNING\n")
    hidden_artifact = os.path.join(folders[0], "artifacts", ".hidden")
    with open(hidden_artifact, "w") as f:
        f.write("kept\n")

    assert scan.scan() == [hidden_artifact]


def test_file_hidden_by_unchanged_folder_mtime(root):
    """A folder whose mtime did not move (as with a coarse clock) is listed by the sweep."""
    folders = write_runs(root, "vision", 4)
    age(root)
    scan = StoreScan(root, sweep_passes=3)
    scan.scan()
    artifacts = os.path.join(folders[3], "artifacts")
    before = os.stat(artifacts)
    with open(os.path.join(artifacts, "late.txt"), "w") as f:
        f.write("late\n")
    os.utime(artifacts, ns=(before.st_atime_ns, before.st_mtime_ns))

    reported = []
    for _ in range(3):
        reported.extend(scan.scan())
    assert reported == [os.path.join(artifacts, "late.txt")]


def test_root_removed_and_back(root):
    write_runs(root, "vision", 1)
    scan = StoreScan(root)
    scan.scan()
    moved = root + "-moved"
    os.rename(root, moved)

    removed = scan.scan()
    assert root in removed
    assert os.path.join(root, "vision", "run-000", "run.yaml") in removed
    os.rename(moved, root)
    back = scan.scan()
    assert os.path.join(root, "vision", "run-000", "run.yaml") in back


def test_missing_root_reported_once(root):
    write_runs(root, "vision", 1)
    scan = StoreScan(root)
    scan.scan()
    moved = root + "-moved"
    os.rename(root, moved)

    assert root in scan.scan()
    assert scan.scan() == []


# What a pass costs


def test_unchanged_store_pass_stats_few_files(root, monkeypatch):
    runs = 40
    folders = write_runs(root, "vision", runs, artifacts=10)
    age(root)
    files = all_files(root)
    store_folders = all_folders(root)
    scan = StoreScan(root)
    scan.scan()

    changed, stats, listings = counted_pass(scan, monkeypatch)
    assert changed == []
    stated_files = [path for path in stats if path in files]
    # Every folder, the two YAML files of each run, and the files of the one run swept.
    assert len(stated_files) < len(files) / 3
    assert set(stats) - files == store_folders
    swept = {path for path in stated_files
             if os.path.basename(path) not in ("run.yaml", "config.yaml")}
    swept_runs = {folder for folder in folders
                  if any(path.startswith(folder + os.sep) for path in swept)}
    assert len(swept_runs) <= 1
    assert all(any(path.startswith(folder) for folder in swept_runs) for path in listings)
    assert len(listings) <= 3  # The swept run's folder, its artifacts/ and artifacts/plots/.


def test_sweep_stats_every_file_within_its_passes(root, monkeypatch):
    write_runs(root, "vision", 8, artifacts=3)
    age(root)
    scan = StoreScan(root, sweep_passes=4)
    scan.scan()

    stated: set[str] = set()
    for _ in range(4):
        changed, stats, _ = counted_pass(scan, monkeypatch)
        assert changed == []
        stated.update(stats)
    assert all_files(root) <= stated


def test_live_run_files_stated_each_pass(root, monkeypatch):
    write_runs(root, "vision", 3)
    age(root)
    live = os.path.join(root, "vision", "live")
    run = new_run(root, "vision", "live", flush_interval_ms=20)
    try:
        run.log_vector({"loss": 1.0}, step=0)
        segment = os.path.join(live, "vectors-0000.arrow")
        wait_until(lambda: os.path.exists(segment), "the first flush")
        scan = StoreScan(root, sweep_passes=1000)
        scan.scan()

        _, stats, _ = counted_pass(scan, monkeypatch)
    finally:
        run.close()
    assert segment in stats
    quiet = [os.path.join(root, "vision", "run-%03d" % number) for number in range(3)]
    for folder in quiet:
        assert os.path.join(folder, "run.yaml") in stats
    # Only the one quiet run whose turn it is to be swept has its other files stated.
    assert sum(os.path.join(folder, "vectors.parquet") in stats for folder in quiet) <= 1

