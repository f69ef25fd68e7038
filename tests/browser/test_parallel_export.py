"""The dashboard's parallel coordinates, its data downloads and its keyboard shortcuts."""

from __future__ import annotations

import csv
import io
import math
from urllib.parse import parse_qs, urlparse

import pyarrow.parquet as pq
import pytest

from ..stores import new_run
from .conftest import ServerProcess, copy_to_docs, screenshot

pytestmark = pytest.mark.browser

EXPERIMENT = "sweep"
#: name → (lr, batch_size, optimizer). The learning rates span more than three decades.
SWEEP = {
    "lr-1e-05": (1e-5, 32, "adamw"),
    "lr-3e-05": (3e-5, 64, "sgd"),
    "lr-1e-04": (1e-4, 32, "adamw"),
    "lr-3e-04": (3e-4, 128, "sgd"),
    "lr-1e-03": (1e-3, 64, "adamw"),
    "lr-3e-03": (3e-3, 32, "sgd"),
    "lr-1e-02": (1e-2, 128, "adamw"),
    "lr-3e-02": (3e-2, 64, "lion"),
}
STEPS = 10
#: A run that logged params and no metric: it sits in the "n/a" slot of the metric axes.
NO_METRICS_RUN = "no-metrics"
#: A run kept open while the tests run, to check that the view follows it.
LIVE_RUN = "live"


def quality(lr: float) -> float:
    """Return 1 for lr = 1e-3, falling to 0 two and a half decades away."""
    return max(0.0, 1.0 - abs(math.log10(lr) + 3) / 2.5)


def sweep_values(lr: float, step: int) -> dict[str, float]:
    """Return val/acc and val/loss of a sweep run; runs with lr ≥ 1e-2 get worse at their last step."""
    progress = step / (STEPS - 1)
    acc = 0.5 + 0.45 * quality(lr) * progress
    if lr >= 1e-2 and step == STEPS - 1:
        acc -= 0.1
    return {"val/acc": acc, "val/loss": 1.5 - acc}


def last_acc(lr: float) -> float:
    return sweep_values(lr, STEPS - 1)["val/acc"]


def best_acc(lr: float) -> float:
    return max(sweep_values(lr, step)["val/acc"] for step in range(STEPS))


def write_sweep(root: str) -> None:
    """Write experiment ``sweep``: eight finished runs of a learning-rate sweep and a run without metrics."""
    for name, (lr, batch_size, optimizer) in SWEEP.items():
        run = new_run(root, EXPERIMENT, name)
        run.log_params({"lr": lr, "batch_size": batch_size, "optimizer": {"name": optimizer}})
        for step in range(STEPS):
            run.log_vector(sweep_values(lr, step), step=step)
        run.close()
    run = new_run(root, EXPERIMENT, NO_METRICS_RUN)
    run.log_params({"lr": 1e-3, "batch_size": 32, "optimizer": {"name": "adamw"}})
    run.close()


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("parallel-store"))
    write_sweep(root)
    live = new_run(root, EXPERIMENT, LIVE_RUN)
    live.log_params({"lr": 5e-4, "batch_size": 64, "optimizer": {"name": "adamw"}})
    live.log_vector({"val/acc": 0.6, "val/loss": 0.9}, step=0)
    yield {"root": root, "live": live}
    live.close()


@pytest.fixture(scope="module")
def server(store, tmp_path_factory):
    process = ServerProcess(store["root"], str(tmp_path_factory.mktemp("parallel-logs"))).launch()
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


def parallel_url(server, query: str = "") -> str:
    return server.url + "experiments/%s/parallel%s" % (EXPERIMENT, "?" + query if query else "")


def axis_keys(page) -> list[str]:
    return page.locator(".pc-axis-header").evaluate_all("headers => headers.map(h => h.dataset.axis)")


def line_points(page, run: str) -> list[tuple[float, float]]:
    """Return the (x, y) points of a run's line, one per axis, from its SVG path."""
    d = page.locator('path.pc-line[data-run="%s"]' % run).get_attribute("d")
    return [tuple(float(v) for v in point.split(",")) for point in d[1:].split("L")]


def axis_y(page, run: str, axis: str) -> float:
    return line_points(page, run)[axis_keys(page).index(axis)][1]


def url_query(page) -> dict[str, list[str]]:
    return parse_qs(urlparse(page.url).query)


def drag_axis(page, axis: str, start: float, end: float) -> None:
    """Drag along an axis from `start` to `end`, fractions of its height from the top."""
    box = page.locator('.pc-brush-area[data-axis="%s"]' % axis).bounding_box()
    x = box["x"] + box["width"] / 2
    page.mouse.move(x, box["y"] + start * box["height"])
    page.mouse.down()
    page.mouse.move(x, box["y"] + (start + end) / 2 * box["height"], steps=4)
    page.mouse.move(x, box["y"] + end * box["height"], steps=4)
    page.mouse.up()


def wait_for_lines(page, count: int) -> None:
    page.wait_for_function("n => document.querySelectorAll('path.pc-line').length === n", arg=count)


def all_runs(store) -> dict[str, float]:
    """Return the lr of every run of the experiment."""
    lrs = {name: lr for name, (lr, _batch, _optimizer) in SWEEP.items()}
    lrs[NO_METRICS_RUN] = 1e-3
    lrs[LIVE_RUN] = 5e-4
    return lrs


def test_parallel_axes_from_store(page, server, store):
    page.goto(parallel_url(server))
    runs = all_runs(store)
    wait_for_lines(page, len(runs))
    assert axis_keys(page) == ["param:batch_size", "param:lr", "param:optimizer.name", "metric:val/acc", "metric:val/loss"]

    # The learning rates span more than two decades, so their axis is logarithmic; batch sizes are not.
    assert page.get_by_role("button", name="Log scale for lr").get_attribute("aria-pressed") == "true"
    assert page.get_by_role("button", name="Log scale for batch_size").get_attribute("aria-pressed") == "false"
    y = {name: axis_y(page, name, "param:lr") for name in SWEEP}
    decade = y["lr-1e-05"] - y["lr-1e-04"]
    assert decade > 0
    assert y["lr-1e-04"] - y["lr-1e-03"] == pytest.approx(decade, abs=0.2)
    assert y["lr-1e-03"] - y["lr-1e-02"] == pytest.approx(decade, abs=0.2)

    # The optimizer is text: a categorical axis, one tick per name, in name order from the top.
    ticks = page.locator('.pc-axis[data-axis="param:optimizer.name"] .pc-tick-label').evaluate_all("labels => labels.map(l => l.textContent)")
    assert ticks == ["adamw", "lion", "sgd"]
    assert axis_y(page, "lr-1e-03", "param:optimizer.name") < axis_y(page, "lr-3e-02", "param:optimizer.name")
    assert axis_y(page, "lr-3e-02", "param:optimizer.name") < axis_y(page, "lr-3e-05", "param:optimizer.name")

    # Higher accuracy is higher on its axis; a run without metrics sits in the "n/a" slot under every metric axis.
    assert axis_y(page, "lr-1e-03", "metric:val/acc") < axis_y(page, "lr-1e-05", "metric:val/acc")
    na = axis_y(page, NO_METRICS_RUN, "metric:val/acc")
    assert na > max(axis_y(page, name, "metric:val/acc") for name in SWEEP)
    assert page.locator('.pc-axis[data-axis="metric:val/acc"] .pc-missing').count() == 1


def test_brush_filters_runs_table(page, server, store):
    page.goto(parallel_url(server))
    runs = all_runs(store)
    wait_for_lines(page, len(runs))
    drag_axis(page, "param:lr", 0.2, 0.75)
    page.wait_for_function("() => new URLSearchParams(location.search).has('brush')")
    (brush,) = url_query(page)["brush"]
    axis, lo, hi = brush.rsplit(":", 2)
    assert axis == "param:lr"
    expected = sorted(name for name, lr in runs.items() if float(lo) <= lr <= float(hi))
    assert 0 < len(expected) < len(runs)
    kept = page.locator("path.pc-line.kept").evaluate_all("paths => paths.map(p => p.dataset.run)")
    assert sorted(kept) == expected
    assert page.get_by_test_id("parallel-count").inner_text() == "%d of %d runs kept" % (len(expected), len(runs))

    # The runs table applies the same brush and shows a notice that names it.
    page.get_by_role("link", name="Show the kept runs in the runs table").click()
    page.wait_for_url("**/experiments/%s?**" % EXPERIMENT)
    table_rows = page.locator("[data-testid=runs-table] tbody tr[data-run]")
    page.wait_for_function("n => document.querySelectorAll('[data-testid=runs-table] tbody tr[data-run]').length === n", arg=len(expected))
    assert sorted(table_rows.evaluate_all("rows => rows.map(r => r.dataset.run)")) == expected
    notice = page.get_by_test_id("brush-notice")
    assert "hide %d runs" % (len(runs) - len(expected)) in notice.inner_text()
    notice.get_by_role("button", name="Clear brushes").click()
    page.wait_for_function("n => document.querySelectorAll('[data-testid=runs-table] tbody tr[data-run]').length === n", arg=len(runs))
    assert "brush" not in url_query(page)
    assert page.get_by_test_id("brush-notice").count() == 0


def test_brushes_combine_and_clear(page, server, store):
    page.goto(parallel_url(server))
    wait_for_lines(page, len(all_runs(store)))
    # The lowest category from the top is "sgd"; a short drag around it keeps that category alone.
    drag_axis(page, "param:optimizer.name", 0.75, 0.92)
    page.wait_for_function("() => new URLSearchParams(location.search).getAll('brush').length === 1")
    assert url_query(page)["brush"] == ["param:optimizer.name:in:sgd"]
    sgd = sorted(name for name, (_lr, _batch, optimizer) in SWEEP.items() if optimizer == "sgd")
    kept = page.locator("path.pc-line.kept").evaluate_all("paths => paths.map(p => p.dataset.run)")
    assert sorted(kept) == sgd

    # A second brush on another axis narrows the kept runs further.
    drag_axis(page, "param:batch_size", 0.0, 0.3)
    page.wait_for_function("() => new URLSearchParams(location.search).getAll('brush').length === 2")
    kept = page.locator("path.pc-line.kept").evaluate_all("paths => paths.map(p => p.dataset.run)")
    assert sorted(kept) == ["lr-3e-04"]

    # A click on an axis clears its brush.
    box = page.locator('.pc-brush-area[data-axis="param:batch_size"]').bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] - 3)
    page.wait_for_function("() => new URLSearchParams(location.search).getAll('brush').length === 1")
    page.get_by_test_id("parallel-brushes").get_by_role("button", name="Clear brushes").click()
    page.wait_for_function("() => !new URLSearchParams(location.search).has('brush')")
    assert page.locator("path.pc-line.dimmed").count() == 0


def test_best_value_switch_and_log_toggle(page, server, store):
    page.goto(parallel_url(server))
    wait_for_lines(page, len(all_runs(store)))
    last_y = axis_y(page, "lr-3e-02", "metric:val/acc")
    page.get_by_role("group", name="Metric value").get_by_role("button", name="Best value").click()
    page.wait_for_function("() => document.querySelector('.pc-axis-header[data-axis=\"max:val/acc\"]') !== null")
    assert axis_keys(page)[-2:] == ["max:val/acc", "min:val/loss"]
    assert url_query(page)["value"] == ["best"]
    # lr-3e-02 loses accuracy at its last step, so its best value is higher than its last.
    assert best_acc(3e-2) > last_acc(3e-2)
    assert axis_y(page, "lr-3e-02", "max:val/acc") < last_y

    page.get_by_role("button", name="Log scale for lr").click()
    page.wait_for_function("() => new URLSearchParams(location.search).get('scale') === 'param:lr:linear'")
    assert page.get_by_role("button", name="Log scale for lr").get_attribute("aria-pressed") == "false"
    # On a linear axis the three smallest learning rates crowd together at the bottom.
    low = [axis_y(page, name, "param:lr") for name in ["lr-1e-05", "lr-3e-05", "lr-1e-04"]]
    assert max(low) - min(low) < 5
    page.reload()
    wait_for_lines(page, len(all_runs(store)))
    assert page.get_by_role("button", name="Log scale for lr").get_attribute("aria-pressed") == "false"
    assert axis_keys(page)[-2:] == ["max:val/acc", "min:val/loss"]


def test_hover_names_run_and_click_opens_it(page, server, store):
    page.goto(parallel_url(server, "axis_param=lr&axis_metric=val/acc&color=none"))
    wait_for_lines(page, len(all_runs(store)))
    (x0, y0), (x1, y1) = line_points(page, "lr-1e-05")
    box = page.get_by_role("img", name="Parallel coordinates").bounding_box()
    page.mouse.move(box["x"] + (x0 + x1) / 2, box["y"] + (y0 + y1) / 2)
    page.wait_for_function("() => document.querySelector('path.pc-hover-line') !== null")
    hovered = page.locator("path.pc-hover-line").get_attribute("data-run")
    assert hovered in page.get_by_test_id("parallel-hover").inner_text()
    page.mouse.click(box["x"] + (x0 + x1) / 2, box["y"] + (y0 + y1) / 2)
    page.wait_for_url("**/experiments/%s/runs/%s" % (EXPERIMENT, hovered))


def test_parallel_screenshot_for_docs(page, server, store):
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(parallel_url(server))
    wait_for_lines(page, len(all_runs(store)))
    drag_axis(page, "param:lr", 0.2, 0.7)
    page.wait_for_function("() => new URLSearchParams(location.search).has('brush')")
    page.mouse.move(0, 0)
    copy_to_docs(screenshot(page, "parallel"), "dashboard-parallel.png")


def download(page, click) -> tuple[str, bytes]:
    """Return the file name and content of the download that ``click()`` starts."""
    with page.expect_download() as info:
        click()
    with open(info.value.path(), "rb") as f:
        return info.value.suggested_filename, f.read()


def chart_menu(page, metric: str):
    card = page.locator('.chart-card[data-metric="%s"]' % metric)
    card.get_by_test_id("export-menu").locator("summary").click()
    return card


def test_chart_downloads_csv_with_run_column(page, server):
    runs = ["lr-1e-03", "lr-3e-02"]
    page.goto(server.url + "experiments/%s/charts?%s" % (EXPERIMENT, "&".join("run=" + run for run in runs)))
    page.locator('.chart-card[data-metric="val/acc"] canvas').wait_for()
    card = chart_menu(page, "val/acc")
    name, body = download(page, card.get_by_role("button", name="CSV, all runs in one file").click)
    assert name == "sweep-val_acc.csv"
    rows = list(csv.DictReader(io.StringIO(body.decode("utf-8"))))
    assert list(rows[0]) == ["run", "step", "timestamp", "val/acc"]
    assert [row["run"] for row in rows] == [run for run in runs for _ in range(STEPS)]
    for row in rows:
        lr = SWEEP[row["run"]][0]
        assert float(row["val/acc"]) == pytest.approx(sweep_values(lr, int(row["step"]))["val/acc"], rel=1e-12)
        assert row["timestamp"].endswith("Z")


def test_chart_downloads_parquet_per_run(page, server):
    runs = ["lr-1e-04", "lr-3e-04"]
    page.goto(server.url + "experiments/%s/charts?%s" % (EXPERIMENT, "&".join("run=" + run for run in runs)))
    page.locator('.chart-card[data-metric="val/loss"] canvas').wait_for()
    card = chart_menu(page, "val/loss")
    downloads = []
    page.on("download", lambda info: downloads.append(info))
    card.get_by_role("button", name="Parquet, one file per run (2)").click()
    for _ in range(100):
        if len(downloads) == 2:
            break
        page.wait_for_timeout(100)
    files = {info.suggested_filename: pq.read_table(info.path()) for info in downloads}
    assert sorted(files) == ["lr-1e-04-val_loss.parquet", "lr-3e-04-val_loss.parquet"]
    for run in runs:
        table = files["%s-val_loss.parquet" % run]
        assert table.column_names == ["step", "timestamp", "val/loss"]
        expected = [sweep_values(SWEEP[run][0], step)["val/loss"] for step in range(STEPS)]
        assert table.column("val/loss").to_pylist() == pytest.approx(expected, rel=1e-12)


def test_runs_table_downloads_shown_rows(page, server):
    query = "q=optimizer.name:sgd&sort=param:lr:desc&param=lr&param=batch_size&metric=val/acc"
    page.goto(server.url + "experiments/%s?%s" % (EXPERIMENT, query))
    page.wait_for_function("() => document.querySelectorAll('[data-testid=runs-table] tbody tr[data-run]').length === 3")
    name, body = download(page, page.get_by_role("button", name="Download CSV").click)
    assert name == "sweep-runs.csv"
    rows = list(csv.DictReader(io.StringIO(body.decode("utf-8"))))
    header = ["status", "run", "name", "started_at", "duration_secs", "tags", "lr", "batch_size"]
    assert list(rows[0]) == header + ["val/acc last", "val/acc min", "val/acc max"]
    sgd = sorted((name for name, spec in SWEEP.items() if spec[2] == "sgd"), key=lambda name: -SWEEP[name][0])
    assert [row["run"] for row in rows] == sgd
    for row in rows:
        lr, batch_size, _optimizer = SWEEP[row["run"]]
        assert row["status"] == "finished"
        assert float(row["lr"]) == lr
        assert int(row["batch_size"]) == batch_size
        # Full precision, not the table's rounded text.
        assert float(row["val/acc last"]) == pytest.approx(last_acc(lr), rel=1e-12)
        assert float(row["val/acc max"]) == pytest.approx(best_acc(lr), rel=1e-12)
        assert float(row["val/acc min"]) == pytest.approx(0.5, rel=1e-12)


def highlighted(page):
    return page.evaluate("() => document.querySelector('tr[data-highlighted]')?.dataset.run ?? null")


def test_keys_move_highlight_select_open(page, server):
    page.goto(server.url + "experiments/%s?sort=name:asc" % EXPERIMENT)
    page.locator("[data-testid=runs-table] tbody tr[data-run]").first.wait_for()
    ids = page.locator("[data-testid=runs-table] tbody tr[data-run]").evaluate_all("rows => rows.map(r => r.dataset.run)")
    assert highlighted(page) is None
    page.keyboard.press("j")
    assert highlighted(page) == ids[0]
    page.keyboard.press("ArrowDown")
    page.keyboard.press("j")
    assert highlighted(page) == ids[2]
    page.keyboard.press("k")
    assert highlighted(page) == ids[1]
    page.keyboard.press("ArrowUp")
    page.keyboard.press("ArrowUp")
    assert highlighted(page) == ids[0]

    page.keyboard.press("x")
    page.wait_for_function("id => new URLSearchParams(location.search).getAll('run').includes(id)", arg=ids[0])
    assert page.get_by_label("Select %s" % ids[0]).is_checked()
    page.keyboard.press("j")
    page.keyboard.press(" ")
    page.wait_for_function("() => new URLSearchParams(location.search).getAll('run').length === 2")
    page.keyboard.press("x")
    page.wait_for_function("() => new URLSearchParams(location.search).getAll('run').length === 1")
    assert url_query(page)["run"] == [ids[0]]

    page.keyboard.press("Enter")
    page.wait_for_url("**/experiments/%s/runs/%s" % (EXPERIMENT, ids[1]))


def test_slash_focuses_search_and_typing_is_ignored(page, server):
    page.goto(server.url + "experiments/" + EXPERIMENT)
    page.locator("[data-testid=runs-table] tbody tr[data-run]").first.wait_for()
    ids = page.locator("[data-testid=runs-table] tbody tr[data-run]").evaluate_all("rows => rows.map(r => r.dataset.run)")
    search = page.get_by_label("Filter runs")
    page.keyboard.press("/")
    assert page.evaluate("() => document.activeElement.getAttribute('aria-label')") == "Filter runs"
    assert search.input_value() == ""
    # Inside the box, j, k, x and ? are text.
    page.keyboard.type("jkx?")
    assert search.input_value() == "jkx?"
    assert highlighted(page) is None
    assert page.locator("dialog.keys-dialog[open]").count() == 0
    search.fill("")
    # The cleared search reloads the runs; wait for every run to be back.
    page.wait_for_function("n => document.querySelectorAll('[data-testid=runs-table] tbody tr[data-run]').length === n", arg=len(ids))
    page.keyboard.press("Escape")
    assert page.evaluate("() => document.activeElement === document.body")
    page.keyboard.press("j")
    assert highlighted(page) is not None

    # The parallel coordinates view has a search box too.
    page.goto(parallel_url(server))
    page.get_by_test_id("parallel-plot").wait_for()
    page.keyboard.press("/")
    assert page.evaluate("() => document.activeElement.getAttribute('aria-label')") == "Filter runs"


def test_question_mark_lists_keys(page, server):
    page.goto(server.url + "experiments/" + EXPERIMENT)
    page.locator("[data-testid=runs-table] tbody tr[data-run]").first.wait_for()
    page.keyboard.press("?")
    dialog = page.get_by_role("dialog", name="Keyboard shortcuts")
    dialog.wait_for()
    text = dialog.inner_text()
    for key in ["/", "j", "k", "Enter", "Space", "x", "?", "Esc"]:
        assert key in text
    # Keys meant for the table wait while the dialog is open.
    page.keyboard.press("j")
    assert highlighted(page) is None
    page.keyboard.press("Escape")
    page.wait_for_function("() => document.querySelector('dialog.keys-dialog[open]') === null")
    page.keyboard.press("?")
    dialog.wait_for()
    dialog.get_by_role("button", name="Close").click()
    page.wait_for_function("() => document.querySelector('dialog.keys-dialog[open]') === null")


def test_parallel_follows_live_runs(page, server, store):
    page.goto(parallel_url(server))
    runs = all_runs(store)
    wait_for_lines(page, len(runs))
    before = axis_y(page, LIVE_RUN, "metric:val/acc")
    # The view reloads the runs every few seconds while one is training, so the new last value shows.
    store["live"].log_vector({"val/acc": 0.9, "val/loss": 0.6}, step=1)
    page.wait_for_function(
        "([run, y]) => { const d = document.querySelector(`path.pc-line[data-run='${run}']`).getAttribute('d');"
        "  return Number(d.slice(1).split('L')[3].split(',')[1]) < y - 1; }",
        arg=[LIVE_RUN, before],
        timeout=20000,
    )
    # A new run appears as soon as the store reports it.
    late = new_run(store["root"], EXPERIMENT, "late")
    late.log_params({"lr": 2e-3, "batch_size": 32, "optimizer": {"name": "adamw"}})
    late.log_vector({"val/acc": 0.7, "val/loss": 0.8}, step=0)
    late.close()
    wait_for_lines(page, len(runs) + 1)
