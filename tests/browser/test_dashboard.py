"""The dashboard in Chromium: every view, live charts, controls, previews, routing."""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.request
from urllib.parse import parse_qs, urlparse

import pytest

from ..stores import new_run
from .conftest import PREFIXES, copy_to_docs, screenshot
from .store import BIG_EXPERIMENT, BIG_RUN, LIVE_EXPERIMENT, LIVE_RUN

pytestmark = pytest.mark.browser

def rows(page):
    return page.locator("[data-testid=runs-table] tbody tr")


def row_ids(page) -> list[str]:
    return rows(page).evaluate_all("rows => rows.map(row => row.dataset.run)")


def chart(page, metric: str):
    return page.locator('.chart-card[data-metric="%s"]' % metric)


def plotted_points(page, metric: str) -> int:
    value = chart(page, metric).locator(".chart-plot").get_attribute("data-points")
    return int(value or 0)


def wait_for_points(page, metric: str, minimum: int = 1) -> None:
    page.wait_for_function(
        "([metric, minimum]) => {"
        "  const plot = document.querySelector(`.chart-card[data-metric='${metric}'] .chart-plot`);"
        "  return plot !== null && Number(plot.dataset.points) >= minimum; }",
        arg=[metric, minimum],
    )


def canvas_image(page, metric: str) -> bytes:
    """Return a PNG of one chart's canvas, with the mouse away so that no cursor is drawn."""
    page.mouse.move(0, 0)
    page.wait_for_timeout(150)
    return chart(page, metric).locator("canvas").screenshot()


def report(capsys, text: str) -> None:
    """Print a measurement past pytest's output capture."""
    with capsys.disabled():
        print("\n[dashboard] " + text)


def test_overview_lists_store(page, server, capsys):
    started = time.perf_counter()
    page.goto(server.url)
    page.locator("[data-testid=experiments] a", has_text=LIVE_EXPERIMENT).wait_for()
    report(capsys, "first view (overview) interactive after %.2f s" % (time.perf_counter() - started))

    assert page.locator(".total-label", has_text="Experiments").is_visible()
    assert page.locator(".total-label", has_text="Active").is_visible()
    live_row = page.locator("tr", has=page.locator("a", has_text=LIVE_RUN)).first
    live_row.wait_for()
    assert live_row.locator(".status-running .live-dot").count() == 1
    page.locator(".activity li").first.wait_for()
    screenshot(page, "overview")


def test_runs_table_filters(page, server, console):
    console.allow("status of 400")  # The invalid search below: Chromium logs every failed request.
    page.goto(server.url + "experiments/" + LIVE_EXPERIMENT)
    rows(page).first.wait_for()
    everything = rows(page).count()
    assert everything >= 6

    page.get_by_label("Filter runs").fill("sweep")
    page.wait_for_function("() => document.querySelectorAll('[data-testid=runs-table] tbody tr').length === 2")
    assert sorted(row_ids(page)) == ["sweep-lr-0.01", "sweep-lr-0.1"]
    assert "q=sweep" in page.url

    page.get_by_label("Filter runs").fill("lr=0.1")
    page.wait_for_function("() => document.querySelectorAll('[data-testid=runs-table] tbody tr').length === 1")
    assert row_ids(page) == ["sweep-lr-0.1"]

    page.get_by_label("Filter runs").fill("no run has this name")
    page.locator(".message-empty", has_text="No run matches").wait_for()

    # The search box speaks the server's run query language.
    page.get_by_label("Filter runs").fill("tag:sweep and lr>0.05")
    wait_for_order(page, ["sweep-lr-0.1"])

    page.get_by_label("Filter runs").fill('"unclosed')
    page.locator(".search-error", has_text="never closed").wait_for()

    page.get_by_label("Filter runs").fill("")
    page.get_by_label("Filter by status").select_option("failed")
    page.wait_for_function("() => document.querySelectorAll('[data-testid=runs-table] tbody tr').length === 1")
    assert row_ids(page) == ["diverged"]

    page.get_by_label("Filter by status").select_option("running")
    rows(page).first.wait_for()
    assert LIVE_RUN in row_ids(page)
    assert "diverged" not in row_ids(page)


def wait_for_order(page, expected: list[str]) -> None:
    """Wait until the runs table shows exactly these runs, in this order (it renders after the URL changes)."""
    page.wait_for_function(
        "expected => JSON.stringify([...document.querySelectorAll('[data-testid=runs-table] tbody tr')]"
        ".map(row => row.dataset.run)) === JSON.stringify(expected)",
        arg=expected,
    )


def test_runs_table_sorts(page, server):
    finished = ["baseline", "sweep-lr-0.01", "sweep-lr-0.1"]
    page.goto(server.url + "experiments/" + LIVE_EXPERIMENT + "?status=finished")
    rows(page).first.wait_for()
    assert sorted(row_ids(page)) == finished

    page.locator("button.sort[data-sort=name]").click()
    wait_for_order(page, finished)
    assert "sort=name%3Aasc" in page.url

    page.locator("button.sort[data-sort=name]").click()
    wait_for_order(page, finished[::-1])
    assert "sort=name%3Adesc" in page.url

    by_lr = ["sweep-lr-0.01", "baseline", "sweep-lr-0.1"]
    page.locator("button.sort[data-sort='param:lr']").click()
    wait_for_order(page, by_lr)

    # Sorting survives a reload: it lives in the URL.
    page.reload()
    wait_for_order(page, by_lr)


def test_metric_chips_pick_columns(page, server):
    page.goto(server.url + "experiments/" + LIVE_EXPERIMENT)
    rows(page).first.wait_for()
    metric_headers = page.locator("th.metric-column")
    column_count = metric_headers.count()
    assert column_count >= 2

    chip = page.get_by_role("group", name="Metrics").get_by_role("button", name="train/acc")
    assert chip.get_attribute("aria-pressed") == "true"
    chip.click()
    page.wait_for_function("n => document.querySelectorAll('th.metric-column').length === n", arg=column_count - 1)
    assert page.locator("th.metric-column", has_text="train/acc").count() == 0
    chip.click()
    page.wait_for_function("n => document.querySelectorAll('th.metric-column').length === n", arg=column_count)


def test_compare_selected_runs(page, server):
    page.goto(server.url + "experiments/" + LIVE_EXPERIMENT)
    rows(page).first.wait_for()
    page.get_by_label("Select baseline").check()
    page.get_by_label("Select sweep-lr-0.1").check()
    screenshot(page, "runs")
    copy_to_docs(screenshot(page, "runs"), "dashboard-runs.png")

    page.get_by_role("link", name="Compare in charts").click()
    page.wait_for_url("**/charts?**")
    assert parse_qs(urlparse(page.url).query)["run"] == ["baseline", "sweep-lr-0.1"]
    wait_for_points(page, "train/loss", 400)
    assert page.locator(".run-chip").count() == 2
    legend = chart(page, "train/loss").locator(".legend-label").all_inner_texts()
    assert legend == ["baseline", "sweep-lr-0.1"]


def test_chart_grows_while_run_writes(page, server):
    page.goto(server.url + "experiments/%s/runs/%s/charts" % (LIVE_EXPERIMENT, LIVE_RUN))
    page.locator(".live-badge", has_text="live").wait_for()
    wait_for_points(page, "train/loss")
    page.evaluate("() => { window.notReloaded = true; }")
    before = plotted_points(page, "train/loss")

    wait_for_points(page, "train/loss", before + 5)
    assert page.evaluate("() => window.notReloaded") is True
    screenshot(page, "live-run-charts")


def test_chart_controls_change_plot(page, server):
    page.goto(server.url + "experiments/%s/charts?run=baseline&run=sweep-lr-0.1" % LIVE_EXPERIMENT)
    wait_for_points(page, "train/loss", 600)
    plain = canvas_image(page, "train/loss")

    page.get_by_label("Smoothing").fill("0.9")
    page.wait_for_url("**smooth=0.9**")
    smoothed = canvas_image(page, "train/loss")
    assert smoothed != plain
    assert "(raw" in chart(page, "train/loss").locator(".legend-value").first.inner_text()

    page.get_by_label("Log scale").check()
    page.wait_for_url("**log=1**")
    logarithmic = canvas_image(page, "train/loss")
    assert logarithmic != smoothed

    page.locator("button[data-x=relative]").click()
    page.wait_for_url("**x=relative**")
    relative = canvas_image(page, "train/loss")
    assert relative != logarithmic

    page.locator("button[data-x=wall]").click()
    page.wait_for_url("**x=wall**")
    wall = canvas_image(page, "train/loss")
    assert wall != relative
    screenshot(page, "charts-controls")

    # The settings are in the URL, so a reload shows the same chart.
    page.reload()
    wait_for_points(page, "train/loss", 600)
    assert page.get_by_label("Log scale").is_checked()
    assert page.locator("button[data-x=wall]").get_attribute("aria-pressed") == "true"


def test_charts_screenshot_for_docs(page, server):
    page.goto(server.url + "experiments/%s/charts?run=baseline&run=sweep-lr-0.01&run=sweep-lr-0.1&run=diverged&run=%s" % (LIVE_EXPERIMENT, LIVE_RUN))
    wait_for_points(page, "train/loss", 800)
    wait_for_points(page, "val/acc", 10)
    box = chart(page, "train/loss").locator("canvas").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.35, box["y"] + box["height"] * 0.5)
    page.wait_for_timeout(200)
    copy_to_docs(screenshot(page, "charts"), "dashboard-charts.png")


def test_nan_and_inf_are_marked(page, server):
    # A closed run: expman-rs stored its NaN and ±Inf as null in vectors.parquet.
    page.goto(server.url + "experiments/%s/runs/diverged/charts" % LIVE_EXPERIMENT)
    wait_for_points(page, "train/loss")
    note = chart(page, "train/loss").locator("[data-testid=marker-note]")
    assert "20 null" in note.inner_text()
    assert chart(page, "train/loss").locator(".legend-value").inner_text() == "null"

    # An open run: its live segments keep NaN and ±Inf exactly.
    page.goto(server.url + "experiments/%s/runs/nan-open/charts" % LIVE_EXPERIMENT)
    wait_for_points(page, "train/loss")
    note = chart(page, "train/loss").locator("[data-testid=marker-note]")
    note.wait_for()
    text = note.inner_text()
    assert "1 +Inf" in text
    assert "1 −Inf" in text
    assert "1 NaN" in text
    screenshot(page, "nan-markers")


def test_run_page_sections(page, server):
    page.goto(server.url + "experiments/%s/runs/baseline" % LIVE_EXPERIMENT)
    page.locator("[data-testid=metadata]").wait_for()
    tree = page.locator(".tree")
    assert tree.locator(".tree-key", has_text="optimizer").count() == 1
    assert tree.locator(".tree-leaf", has_text="adamw").is_visible()
    tree.locator("summary", has_text="optimizer").click()
    assert not tree.locator(".tree-leaf", has_text="adamw").is_visible()
    screenshot(page, "run-overview")

    page.get_by_role("link", name="Logs").click()
    page.locator("[data-testid=log]", has_text="epoch 1 done").wait_for()
    assert page.locator(".log-warn", has_text="learning rate is high").count() == 1


def test_live_log_tail_grows(page, server):
    page.goto(server.url + "experiments/%s/runs/%s/logs" % (LIVE_EXPERIMENT, LIVE_RUN))
    log = page.locator("[data-testid=log] .log-line")
    log.first.wait_for()
    before = log.count()
    # The live run logs a line every 25 steps of 0.1 s.
    page.wait_for_function("n => document.querySelectorAll('[data-testid=log] .log-line').length > n", arg=before, timeout=12000)


def test_artifact_previews(page, server):
    page.goto(server.url + "experiments/%s/runs/baseline/artifacts" % LIVE_EXPERIMENT)
    page.locator(".file-button[data-path='images/sample.png']").click()
    image = page.locator("[data-testid=image-preview]")
    image.wait_for()
    page.wait_for_function("img => img.complete && img.naturalWidth === 96", arg=image.element_handle())
    download = page.locator("[data-testid=download]").get_attribute("href")
    assert download.endswith("/artifacts/images/sample.png?download=1")
    screenshot(page, "artifact-image")

    page.locator(".file-button[data-path='table.csv']").click()
    page.locator("[data-testid=preview-table] td", has_text="first, warm-up").wait_for()

    page.locator(".file-button[data-path='predictions.parquet']").click()
    page.locator("[data-testid=preview-table] td", has_text="bird").wait_for()

    page.locator(".file-button[data-path='summary.json']").click()
    page.locator(".tree-key", has_text="seeds").wait_for()

    page.locator(".file-button[data-path='notes.txt']").click()
    page.locator("[data-testid=text-preview]", has_text="Second line.").wait_for()

    page.locator(".file-button[data-path='run.yaml']").click()
    page.locator("[data-testid=text-preview]", has_text="status").wait_for()


def test_deep_link_reloads_to_view(page, server):
    page.goto(server.url)
    page.locator("[data-testid=experiments] a", has_text=LIVE_EXPERIMENT).click()
    page.get_by_role("link", name="baseline", exact=True).click()
    page.get_by_role("link", name="Artifacts (5)").click()
    page.locator(".file-button[data-path='notes.txt']").click()
    page.locator("[data-testid=text-preview]").wait_for()
    assert urlparse(page.url).path == "/experiments/%s/runs/baseline/artifacts" % LIVE_EXPERIMENT

    page.reload()
    page.locator("[data-testid=text-preview]", has_text="Baseline notes.").wait_for()
    assert page.locator("[data-view=run-artifacts]").count() == 1

    page.go_back()
    page.locator("[data-view=run-overview]").wait_for()
    page.go_back()
    page.locator("[data-view=experiment-runs]").wait_for()


def test_unknown_path_says_so(page, server):
    page.goto(server.url + "no/such/page")
    page.locator(".message-error", has_text="No page of the dashboard").wait_for()


def test_missing_run_says_so(page, server, console):
    console.allow("404")
    page.goto(server.url + "experiments/%s/runs/no-such-run" % LIVE_EXPERIMENT)
    page.locator(".message-error", has_text="not found").wait_for()


def test_deleted_run_is_reported(page, server, browser_store, console):
    console.allow("404")
    root = browser_store["root"]
    run = new_run(root, "scratch", "doomed")
    run.log_vector({"loss": 1.0}, step=0)
    run.close()
    page.goto(server.url + "experiments/scratch/runs/doomed/charts")
    wait_for_points(page, "loss")
    page.wait_for_timeout(500)

    shutil.rmtree(os.path.join(root, "scratch", "doomed"))
    page.locator(".banner-error", has_text="This run was deleted").wait_for()
    screenshot(page, "run-deleted")


def test_server_gone_is_reported(page, servers, console):
    console.allow("ERR_CONNECTION_REFUSED|Failed to load resource|net::ERR")
    # The server of the deepest base URL: stopped here, and started again before the test ends.
    server = servers[PREFIXES[-1]]
    page.goto(server.url + "experiments/%s/runs/%s/charts" % (LIVE_EXPERIMENT, LIVE_RUN))
    page.locator(".live-badge", has_text="live").wait_for()
    wait_for_points(page, "train/loss")
    server.stop()
    try:
        banner = page.locator(".banner-error", has_text="does not answer")
        banner.wait_for()
        screenshot(page, "server-gone")
    finally:
        server.launch().wait_ready()
    banner.wait_for(state="detached", timeout=20000)

    # EventSource reconnects by itself, and the chart goes on growing.
    page.locator(".live-badge", has_text="live").wait_for()
    after_restart = plotted_points(page, "train/loss")
    wait_for_points(page, "train/loss", after_restart + 5)


def test_large_run_opens_and_zooms(page, server, capsys):
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    started = time.perf_counter()
    page.goto(server.url + "experiments/%s/runs/%s/charts" % (BIG_EXPERIMENT, BIG_RUN))
    wait_for_points(page, "loss")
    report(capsys, "1,000,000-row run: chart drawn %.2f s after opening its page" % (time.perf_counter() - started))
    assert plotted_points(page, "loss") <= 2000
    assert any("max_points=2000" in url for url in requests)

    # The page stays responsive: a script runs at once.
    started = time.perf_counter()
    page.evaluate("() => 1")
    assert time.perf_counter() - started < 1.0

    # Drag across 10% of the plot: the visible range is fetched again, in more detail.
    box = chart(page, "loss").locator(".u-over").bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.40, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.45, y, steps=5)
    page.mouse.up()
    page.locator("[data-testid=zoom-status]").wait_for()
    page.wait_for_function("() => !document.querySelector('[data-testid=zoom-status]').textContent.includes('loading')")
    zoomed = [url for url in requests if "since_step=" in url and "until_step=" in url]
    assert zoomed, "zooming fetched no step range"
    query = parse_qs(urlparse(zoomed[-1]).query)
    since, until = int(query["since_step"][0]), int(query["until_step"][0])
    assert 350_000 < since < until < 500_000
    screenshot(page, "large-run-zoomed")

    page.locator(".u-over").first.dblclick()
    page.locator("[data-testid=zoom-status]").wait_for(state="detached")


@pytest.mark.parametrize("base", PREFIXES)
def test_dashboard_under_base_url(page, servers, base):
    prefixed_server = servers[base]
    requests: list[str] = []
    page.on("request", lambda request: requests.append(urlparse(request.url).path))
    page.goto(prefixed_server.url)
    page.locator("[data-testid=experiments] a", has_text=LIVE_EXPERIMENT).click()
    page.wait_for_url("**%sexperiments/%s" % (base, LIVE_EXPERIMENT))
    page.get_by_role("link", name="baseline", exact=True).click()
    page.get_by_role("link", name="Charts").click()
    wait_for_points(page, "train/loss")
    assert urlparse(page.url).path == "%sexperiments/%s/runs/baseline/charts" % (base, LIVE_EXPERIMENT)

    page.reload()
    wait_for_points(page, "train/loss")
    outside = [path for path in requests if not path.startswith(base)]
    assert outside == []
    assert any(path.startswith(base + "assets/") for path in requests)
    assert any(path.startswith(base + "api/") for path in requests)


def test_notebook_and_edit_shown_when_supported(page, server):
    """The server offers neither notebooks nor edits yet, so a mocked /api/server reports both."""
    calls: dict[str, dict] = {}

    def server_info(route):
        route.fulfill(json={"version": "test", "mode": "standalone", "watcher": "inotify", "read_only": False,
                            "live": True, "subscribers": 0, "jupyter": True, "editable": True})

    def spawn(route):
        calls["spawn"] = {"body": route.request.post_data_json, "xsrf": route.request.headers.get("x-xsrftoken")}
        route.fulfill(json={"url": server.url + "api/server", "path": "vision/baseline/interactive.ipynb", "mode": "standalone"})

    def patch(route):
        if route.request.method != "PATCH":
            route.fallback()
            return
        calls["patch"] = {"body": route.request.post_data_json, "xsrf": route.request.headers.get("x-xsrftoken")}
        route.fulfill(json={"id": "baseline", "description": "edited", "tags": ["a", "b"]})

    page.route("**/api/server", server_info)
    page.route("**/api/jupyter/spawn", spawn)
    page.route("**/api/experiments/%s/runs/baseline" % LIVE_EXPERIMENT, patch)

    page.goto(server.url + "experiments/%s/runs/baseline" % LIVE_EXPERIMENT)
    xsrf = next(cookie["value"] for cookie in page.context.cookies() if cookie["name"] == "_xsrf")

    with page.expect_popup() as popup:
        page.locator("[data-testid=notebook-button]").click()
    popup.value.wait_for_url("**/api/server")
    assert calls["spawn"]["body"] == {"experiment": LIVE_EXPERIMENT, "run": "baseline"}
    assert calls["spawn"]["xsrf"] == xsrf

    page.locator("[data-testid=edit-button]").click()
    page.get_by_label("Description").fill("edited")
    page.get_by_label("Tags, separated by commas").fill("a, b")
    page.get_by_role("button", name="Save").click()
    page.locator(".description", has_text="edited").wait_for()
    assert calls["patch"]["body"] == {"description": "edited", "tags": ["a", "b"]}
    assert calls["patch"]["xsrf"] == xsrf


@pytest.mark.parametrize(
    "flags",
    [
        {"read_only": False},
        {"read_only": False, "jupyter": False, "editable": False},
        {"read_only": True, "jupyter": False, "editable": True},
    ],
    ids=["not-reported", "reported-off", "read-only"],
)
def test_notebook_and_edit_hidden_unless_supported(page, server, flags):
    info = {"version": "test", "mode": "standalone", "watcher": "inotify", "live": True, "subscribers": 0, **flags}
    page.route("**/api/server", lambda route: route.fulfill(json=info))
    page.goto(server.url + "experiments/%s/runs/baseline" % LIVE_EXPERIMENT)
    page.locator("[data-testid=metadata]").wait_for()
    page.locator(".server-info").wait_for()
    assert page.locator("[data-testid=notebook-button]").count() == 0
    assert page.locator("[data-testid=edit-button]").count() == 0


def test_edit_saves_through_server(page, server):
    with urllib.request.urlopen(server.url + "api/server", timeout=10) as reply:
        info = json.load(reply)
    if info.get("read_only") or not info.get("editable"):
        pytest.skip("the server does not report editable: true")

    page.goto(server.url + "experiments/%s/runs/sweep-lr-0.01" % LIVE_EXPERIMENT)
    page.locator("[data-testid=edit-button]").click()
    page.get_by_label("Description").fill("edited in the browser test")
    page.get_by_label("Tags, separated by commas").fill("sweep, edited")
    page.get_by_role("button", name="Save").click()
    page.locator(".description", has_text="edited in the browser test").wait_for()

    page.reload()
    page.locator(".description", has_text="edited in the browser test").wait_for()
    assert page.locator(".page-header .tag").all_inner_texts() == ["sweep", "edited"]
