"""What a new user of the dashboard found: many tabs, long names, unknown ids, brushes and groups."""

from __future__ import annotations

import csv
import json
import os
import time
import urllib.request
from urllib.parse import parse_qs, quote, urlparse

import pytest

from .conftest import DEFAULT_TIMEOUT_MS, ServerProcess, screenshot
from ..stores import new_run
from .store import FINDINGS_EXPERIMENT, LONG_RUN, LiveRun, write_findings_store

pytestmark = pytest.mark.browser

#: The experiment of the many-tabs test, with one run that keeps training.
TABS_EXPERIMENT = "tabs"
TABS_RUN = "live"
#: Seconds a hidden page waits before it closes its streams (HIDDEN_RELEASE_SECONDS in visibility.ts).
HIDDEN_RELEASE_SECONDS = 5
#: Seconds between two polls of a live run the charts do not stream (POLL_SECONDS in session.ts).
POLL_SECONDS = 5

#: Counts the EventSources a page opened and has not closed, by URL, in `window.openStreams()`.
TRACK_STREAMS = """
(() => {
  const Native = window.EventSource;
  const open = new Set();
  window.openStreams = () => [...open].filter((source) => source.readyState !== Native.CLOSED).map((source) => source.url);
  window.connectedStreams = () => [...open].filter((source) => source.readyState === Native.OPEN).map((source) => source.url);
  window.EventSource = class extends Native {
    constructor(url, init) {
      super(url, init);
      open.add(this);
    }
    close() {
      open.delete(this);
      super.close();
    }
  };
})();
"""

#: Makes the page report itself hidden (true) or visible (false): headless Chromium shows every page.
SET_HIDDEN = """
(hidden) => {
  Object.defineProperty(document, "visibilityState", { configurable: true, get: () => (hidden ? "hidden" : "visible") });
  Object.defineProperty(document, "hidden", { configurable: true, get: () => hidden });
  document.dispatchEvent(new Event("visibilitychange"));
}
"""


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("findings-store"))
    write_findings_store(root)
    live = LiveRun(root, TABS_EXPERIMENT, TABS_RUN)
    yield {"root": root, "live": live}
    live.stop()


@pytest.fixture(scope="module")
def server(store, tmp_path_factory):
    process = ServerProcess(store["root"], str(tmp_path_factory.mktemp("findings-logs"))).launch()
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


@pytest.fixture
def context(browser, console):
    """A browser context that tracks each page's open streams and fails on unexpected console errors."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, color_scheme="light")
    context.set_default_timeout(DEFAULT_TIMEOUT_MS)
    context.add_init_script(TRACK_STREAMS)
    context.on("console", lambda message: console.errors.append(message.text) if message.type == "error" else None)
    context.on("weberror", lambda error: console.errors.append("uncaught: %s" % error.error))
    yield context
    context.close()
    assert console.unexpected() == [], "a page logged errors to its console"


def live_range(page, run: str = TABS_RUN) -> dict[str, int]:
    """Return the points, first and last step that the train/loss chart plots for a run."""
    row = page.locator('.chart-card[data-metric="train/loss"] .legend-row[data-run="%s"]' % run)
    return {
        "points": int(row.get_attribute("data-points") or 0),
        "first": int(row.get_attribute("data-first-step") or -1),
        "last": int(row.get_attribute("data-last-step") or -1),
    }


def wait_for_last_step(page, minimum: int, run: str = TABS_RUN) -> None:
    page.wait_for_function(
        "([run, minimum]) => {"
        "  const row = document.querySelector(`.chart-card[data-metric='train/loss'] .legend-row[data-run='${run}']`);"
        "  return row !== null && Number(row.dataset.lastStep) >= minimum; }",
        arg=[run, minimum],
    )


def test_hidden_tabs_release_streams(context, server, store):
    base = server.url + "experiments/" + TABS_EXPERIMENT
    urls = [
        base + "/runs/%s/charts" % TABS_RUN,
        base + "/runs/%s" % TABS_RUN,
        base + "/charts?run=%s" % TABS_RUN,
        base,
        server.url,
        base + "/compare?run=%s" % TABS_RUN,
        base + "/runs/%s/logs" % TABS_RUN,
    ]
    context.clock.install()
    pages = []
    for url in urls:
        page = context.new_page()
        page.goto(url)
        page.locator("[data-view]").first.wait_for()
        streams = page.evaluate("() => openStreams()")
        assert len(streams) == len(set(streams)), "a page opened two streams of one URL: %s" % streams
        pages.append(page)
        if len(pages) == 1:
            wait_for_last_step(page, 0)
        # Every page but the one in front reports itself hidden, and after
        # HIDDEN_RELEASE_SECONDS closes its streams.
        page.evaluate(SET_HIDDEN, True)
        context.clock.fast_forward((HIDDEN_RELEASE_SECONDS + 1) * 1000)
        page.wait_for_function("() => openStreams().length === 0")

    first = pages[0]
    before = live_range(first)
    assert before["points"] == before["last"] - before["first"] + 1
    first.bring_to_front()
    first.evaluate(SET_HIDDEN, False)
    first.wait_for_function("() => openStreams().length === 1")
    wait_for_last_step(first, store["live"].steps)
    after = live_range(first)
    assert after["last"] > before["last"]
    # One point per step from the first: no step missing and none repeated.
    assert after["points"] == after["last"] - after["first"] + 1
    screenshot(first, "findings-tab-back")

    # The log page gets the lines written while it was hidden, each once.
    logs = pages[-1]
    logs.bring_to_front()
    logs.evaluate(SET_HIDDEN, False)
    target = (store["live"].steps // 25 + 1) * 25
    logs.locator("[data-testid=log] .log-line", has_text="step %d" % target).wait_for()
    lines = logs.locator("[data-testid=log] .log-line").all_inner_texts()
    logged = [int(line.rsplit("step ", 1)[1]) for line in lines if "] step " in line]
    assert logged == list(range(logged[0], logged[-1] + 1, 25))


def wait_for_value(server, run: str, step: int, metric: str) -> None:
    """Wait until the API serves a value of ``metric`` at ``step`` of a run of the tabs experiment."""
    url = server.url + "api/experiments/%s/runs/%s/metrics?since_step=%d&until_step=%d" % (
        TABS_EXPERIMENT, quote(run), step - 1, step)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with urllib.request.urlopen(url, timeout=10) as reply:
            if any(row.get(metric) is not None for row in json.loads(reply.read())):
                return
        time.sleep(0.1)
    raise AssertionError("%s at step %d of %s was not written within 30 s" % (metric, step, run))


def wait_for_points(page, run: str, metric: str, count: int) -> None:
    page.wait_for_function(
        "([run, metric, count]) => {"
        "  const row = document.querySelector(`.chart-card[data-metric='${metric}'] .legend-row[data-run='${run}']`);"
        "  return row !== null && Number(row.dataset.points) === count; }",
        arg=[run, metric, count],
    )


def test_second_row_at_shown_step(context, server, store):
    """A validation metric logged at a step already drawn shows, live and when a hidden tab comes back.

    The logger writes a second row for that step, which the server merges into
    the first. A tab shown again resumes from its last event, so it gets a
    merge into a step before its last one too, which a stream started after
    its last step would skip.
    """
    run = new_run(store["root"], TABS_EXPERIMENT, "same-step", flush_interval_ms=20)
    try:
        for step in range(5):
            run.log_vector({"train/loss": 1.0 / (step + 1)}, step=step)
        wait_for_value(server, "same-step", 4, "train/loss")
        context.clock.install()
        page = context.new_page()
        page.goto(server.url + "experiments/%s/runs/same-step/charts" % TABS_EXPERIMENT)
        wait_for_last_step(page, 4, run="same-step")
        page.wait_for_function("() => connectedStreams().some((url) => url.includes('/runs/same-step/live'))")

        run.log_vector({"val/score": 0.5}, step=4)
        wait_for_points(page, "same-step", "val/score", 1)

        page.evaluate(SET_HIDDEN, True)
        context.clock.fast_forward((HIDDEN_RELEASE_SECONDS + 1) * 1000)
        page.wait_for_function("() => openStreams().length === 0")
        run.log_vector({"val/score": 0.3}, step=3)
        wait_for_value(server, "same-step", 3, "val/score")
        run.log_vector({"train/loss": 0.1}, step=5)
        wait_for_value(server, "same-step", 5, "train/loss")

        page.evaluate(SET_HIDDEN, False)
        page.wait_for_function("() => openStreams().length === 1")
        wait_for_points(page, "same-step", "val/score", 2)
        screenshot(page, "findings-merged-after-hidden")
        # Each train/loss point once: the rows before the tab was hidden were not sent again.
        assert live_range(page, "same-step") == {"points": 6, "first": 0, "last": 5}
    finally:
        run.close()


def test_merge_before_stream_connects(context, server, store):
    """A value merged into the last loaded step after the page loaded its rows, but before its stream connected, shows."""
    run = new_run(store["root"], TABS_EXPERIMENT, "late-stream", flush_interval_ms=20)
    held = []
    try:
        for step in range(5):
            run.log_vector({"train/loss": 1.0 / (step + 1)}, step=step)
        wait_for_value(server, "late-stream", 4, "train/loss")
        page = context.new_page()
        # Hold the run's stream request until the merge is on disk.
        page.route("**/runs/late-stream/live*", lambda route: held.append(route))
        page.goto(server.url + "experiments/%s/runs/late-stream/charts" % TABS_EXPERIMENT)
        wait_for_last_step(page, 4, run="late-stream")
        page.wait_for_function("() => openStreams().some((url) => url.includes('/runs/late-stream/live'))")
        run.log_vector({"val/score": 0.5}, step=4)
        wait_for_value(server, "late-stream", 4, "val/score")
        assert len(held) == 1
        held[0].continue_()
        wait_for_points(page, "late-stream", "val/score", 1)
        assert live_range(page, "late-stream") == {"points": 5, "first": 0, "last": 4}
    finally:
        run.close()


def open_streamed_run(context, server, run, name: str, steps: int):
    """Log ``steps`` steps of train/loss to an open run, then open its charts and wait until its stream is connected."""
    for step in range(steps):
        run.log_vector({"train/loss": 1.0 / (step + 1)}, step=step)
    wait_for_value(server, name, steps - 1, "train/loss")
    page = context.new_page()
    page.goto(server.url + "experiments/%s/runs/%s/charts" % (TABS_EXPERIMENT, quote(name)))
    wait_for_last_step(page, steps - 1, run=name)
    page.wait_for_function("(name) => connectedStreams().some((url) => url.includes(`/runs/${name}/live`))",
                           arg=quote(name))
    return page


def test_live_nan_marked_as_nan(context, server, store):
    """NaN and +Inf that arrive live are marked as such, also for a metric whose only values they are."""
    run = new_run(store["root"], TABS_EXPERIMENT, "nan-live", flush_interval_ms=20)
    try:
        page = open_streamed_run(context, server, run, "nan-live", 5)
        run.log_vector({"train/loss": float("nan"), "grad/norm": float("nan")}, step=5)
        run.log_vector({"train/loss": 0.1, "grad/norm": float("inf")}, step=6)
        wait_for_last_step(page, 6, run="nan-live")
        wait_for_points(page, "nan-live", "grad/norm", 2)
        grad = page.locator(".chart-card[data-metric='grad/norm'] [data-testid=marker-note]")
        assert "1 NaN" in grad.inner_text()
        assert "1 +Inf" in grad.inner_text()
        loss = page.locator(".chart-card[data-metric='train/loss'] [data-testid=marker-note]")
        assert "1 NaN" in loss.inner_text()
        assert "null" not in loss.inner_text()
        screenshot(page, "findings-live-nan")
    finally:
        run.close()


def test_irregular_live_metric_has_no_null_marks(context, server, store):
    """A metric first logged while the page is open, at irregular steps, gets no "null" marks.

    Its values land both in the rows loaded with the page and in rows that
    arrive live, and its step grid is taken over both.
    """
    run = new_run(store["root"], TABS_EXPERIMENT, "irregular-live", flush_interval_ms=20)
    try:
        page = open_streamed_run(context, server, run, "irregular-live", 18)
        for step in (5, 10):
            run.log_vector({"val/score": step / 20}, step=step)
        wait_for_points(page, "irregular-live", "val/score", 2)
        for step in range(18, 25):
            run.log_vector({"train/loss": 1.0 / (step + 1)}, step=step)
        run.log_vector({"val/score": 19 / 20}, step=19)
        wait_for_value(server, "irregular-live", 19, "val/score")
        wait_for_last_step(page, 24, run="irregular-live")
        wait_for_points(page, "irregular-live", "val/score", 3)
        assert page.locator(".chart-card[data-metric='val/score'] .chart-note").count() == 0
        screenshot(page, "findings-irregular-live")
    finally:
        run.close()


def test_polled_run_gets_merged_value(context, server, store):
    """A live run beyond the ones the charts stream is polled, and a polled run gets merged values too."""
    names = ["polled-%d" % index for index in range(4)]
    runs = [new_run(store["root"], TABS_EXPERIMENT, name, flush_interval_ms=20) for name in names]
    try:
        for run in runs:
            for step in range(3):
                run.log_vector({"train/loss": 1.0 / (step + 1)}, step=step)
        for name in names:
            wait_for_value(server, name, 2, "train/loss")
        context.clock.install()
        page = context.new_page()
        page.goto(server.url + "experiments/%s/charts?%s" % (TABS_EXPERIMENT, "&".join("run=" + name for name in names)))
        for name in names:
            wait_for_last_step(page, 2, run=name)
        # The charts stream three live runs at most, and poll the others.
        run_streams = [url for url in page.evaluate("() => openStreams()") if "/runs/" in url]
        assert len(run_streams) == 3
        page.wait_for_function("() => connectedStreams().filter((url) => url.includes('/runs/')).length === 3")

        for run, name in zip(runs, names):
            run.log_vector({"val/score": 0.5}, step=2)
            wait_for_value(server, name, 2, "val/score")
        context.clock.fast_forward((POLL_SECONDS + 1) * 1000)
        for name in names:
            wait_for_points(page, name, "val/score", 1)
    finally:
        for run in runs:
            run.close()


def test_irregular_metric_has_no_null_marks(context, server, store):
    """A metric logged at irregular steps gets no "null" marks in the steps it was not logged at."""
    run = new_run(store["root"], TABS_EXPERIMENT, "irregular")
    for step in range(20):
        values = {"train/loss": 1.0 / (step + 1)}
        if step in (5, 10, 19):
            values["val/score"] = step / 20
        run.log_vector(values, step=step)
    run.close()
    page = context.new_page()
    page.goto(server.url + "experiments/%s/runs/irregular/charts" % TABS_EXPERIMENT)
    wait_for_points(page, "irregular", "val/score", 3)
    assert page.locator(".chart-card[data-metric='val/score'] .chart-note").count() == 0
    screenshot(page, "findings-irregular-steps")


def test_nan_at_last_step_marks_only_its_metric(context, server, store):
    """A last step that logged only a NaN leaves an empty row after close: only that metric gets a "null" mark."""
    run = new_run(store["root"], TABS_EXPERIMENT, "diverged")
    for step in range(10):
        run.log_vector({"train/loss": 1.0 / (step + 1), "train/acc": step / 10}, step=step)
    run.log_vector({"train/loss": float("nan")}, step=10)
    run.close()
    page = context.new_page()
    page.goto(server.url + "experiments/%s/runs/diverged/charts" % TABS_EXPERIMENT)
    wait_for_points(page, "diverged", "train/acc", 10)
    wait_for_points(page, "diverged", "train/loss", 11)
    loss_note = page.locator(".chart-card[data-metric='train/loss'] .chart-note")
    assert "null" in loss_note.inner_text()
    assert page.locator(".chart-card[data-metric='train/acc'] .chart-note").count() == 0


def test_unreadable_files_named_on_run_page(context, server, store, console):
    """A closed run whose config.yaml and vectors.parquet cannot be parsed shows why, not "no params"."""
    console.allow("status of 422")  # The page's request for the rows of the damaged file.
    run = new_run(store["root"], TABS_EXPERIMENT, "damaged")
    run.log_params({"lr": 0.1})
    run.log_vector({"train/loss": 1.0}, step=0)
    run.close()
    folder = os.path.join(store["root"], TABS_EXPERIMENT, "damaged")
    with open(os.path.join(folder, "config.yaml"), "w") as file:
        file.write("lr: [1,\n")
    parquet = os.path.join(folder, "vectors.parquet")
    os.truncate(parquet, os.path.getsize(parquet) // 2)
    past = time.time() - 60
    for name in ("config.yaml", "vectors.parquet"):
        os.utime(os.path.join(folder, name), (past, past))
    page = context.new_page()
    page.goto(server.url + "experiments/%s/runs/damaged" % TABS_EXPERIMENT)
    alerts = page.locator(".run-overview [role=alert]")
    alerts.nth(1).wait_for()
    texts = alerts.all_inner_texts()
    assert texts[0].startswith("config.yaml cannot be read: ")
    assert texts[1].startswith("vectors.parquet cannot be read: ")
    assert page.get_by_text("This run logged no params.").count() == 0
    screenshot(page, "findings-unreadable-files")

    # A run folder that comes with a damaged run.yaml, so the server never had a good copy of it.
    staged = os.path.join(os.path.dirname(store["root"]), "damaged-run-yaml")
    os.makedirs(staged)
    with open(os.path.join(staged, "run.yaml"), "w") as file:
        file.write("name: [damaged\n")
    os.utime(os.path.join(staged, "run.yaml"), (past, past))
    os.rename(staged, os.path.join(store["root"], TABS_EXPERIMENT, "damaged-run-yaml"))
    page.goto(server.url + "experiments/%s/runs/damaged-run-yaml" % TABS_EXPERIMENT)
    page.get_by_text("run.yaml cannot be read: ").wait_for()
    assert page.get_by_text("The last values are kept in run.yaml, which cannot be read.").count() == 1


def findings_url(server, tab: str = "", query: str = "") -> str:
    url = server.url + "experiments/" + FINDINGS_EXPERIMENT
    if tab:
        url += "/" + tab
    if query:
        url += "?" + query
    return url


def long_labels(page):
    return page.locator('.run-label[title="%s"]' % LONG_RUN)


def assert_truncated(page, minimum: int = 1) -> None:
    """Check that the long run name shows cut with an ellipsis in each place, and that the page does not scroll sideways."""
    labels = long_labels(page)
    labels.first.wait_for()
    widths = labels.evaluate_all("labels => labels.map((label) => [label.clientWidth, label.scrollWidth])")
    assert len(widths) >= minimum
    for visible, whole in widths:
        assert 0 < visible < whole
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 1280


def assert_cut_once_valued(label) -> None:
    """Check that a legend label is cut once its row shows a point.

    Until the chart's data arrive the value cell is empty, and a long name may fit in the room it leaves.
    A row names the step of its point once it shows one.
    """
    label.evaluate(
        """label => new Promise((resolve) => {
            const row = label.parentElement;
            const check = () => (row.textContent.includes("step") ? resolve() : requestAnimationFrame(check));
            check();
        })"""
    )
    assert label.evaluate("label => label.clientWidth < label.scrollWidth")


def test_long_run_name_truncated(page, server):
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(findings_url(server))
    assert_truncated(page)
    started = page.locator("[data-testid=runs-table] th", has_text="Started").bounding_box()
    assert started["x"] + started["width"] < 640
    screenshot(page, "findings-long-name-runs")

    page.goto(findings_url(server, "compare", "run=%s&run=short-a&ymetric=train/loss" % LONG_RUN))
    page.locator("[data-testid=compare-chart] .legend-row[data-run='short-a']").wait_for()
    # The chip and the header of each of the two tables.
    assert_truncated(page, 3)
    legend = page.locator("[data-testid=compare-chart] .legend-row[data-run='%s'] .legend-label" % LONG_RUN)
    assert legend.get_attribute("title") == LONG_RUN
    assert_cut_once_valued(legend)
    screenshot(page, "findings-long-name-compare")

    page.goto(findings_url(server, "charts", "run=%s&run=short-a" % LONG_RUN))
    legend = page.locator(".chart-card[data-metric='epoch'] .legend-row[data-run='%s'] .legend-label" % LONG_RUN)
    legend.wait_for()
    assert legend.get_attribute("title") == LONG_RUN
    assert_cut_once_valued(legend)
    assert_truncated(page)

    page.goto(findings_url(server, "parallel"))
    page.locator("path[data-run='%s']" % LONG_RUN).dispatch_event("pointermove")
    assert_truncated(page)
    screenshot(page, "findings-long-name-parallel")


def test_compare_legend_waits_for_rows(page, server):
    """A run whose rows are still loading shows no value in the compare legend, not "no points"."""
    held = []
    page.route("**/runs/short-a/metrics*", lambda route: held.append(route))
    page.goto(findings_url(server, "compare", "run=short-a&ymetric=train/loss"))
    value = page.locator("[data-testid=compare-chart] .legend-row[data-run='short-a'] .legend-value")
    value.wait_for(state="attached")
    deadline = time.monotonic() + 30
    while not held and time.monotonic() < deadline:
        page.wait_for_timeout(50)
    assert len(held) == 1
    assert value.text_content() == ""
    held[0].continue_()
    page.wait_for_function(
        "() => document.querySelector(\"[data-testid=compare-chart] .legend-row[data-run='short-a'] .legend-value\")"
        ".textContent.includes('step')"
    )


def fake_jupyter(page, server) -> dict:
    """Make the page see a server with Jupyter, and record the spawn requests instead of starting one."""
    calls: dict = {}

    def server_info(route):
        route.fulfill(json={"version": "test", "mode": "standalone", "watcher": "inotify", "read_only": False,
                            "live": True, "subscribers": 0, "jupyter": True, "editable": True})

    def spawn(route):
        calls["spawn"] = route.request.post_data_json
        route.fulfill(json={"url": server.url + "api/server", "path": "findings/interactive.ipynb", "mode": "standalone"})

    page.route("**/api/server", server_info)
    page.route("**/api/jupyter/spawn", spawn)
    return calls


@pytest.mark.parametrize("tab", ["compare", "charts"])
def test_unknown_run_ids_left_out(page, server, tab):
    calls = fake_jupyter(page, server)
    page.goto(findings_url(server, tab, "run=short-a&run=nope&run=..&run=short-a"))
    notice = page.locator("[data-testid=missing-runs]")
    notice.wait_for()
    assert notice.inner_text() == "Runs not found in this experiment: “nope”, “..”."
    button = page.locator("[data-testid=notebook-button]")
    assert button.inner_text() == "Open in notebook"

    with page.expect_popup():
        button.click()
    assert calls["spawn"] == {"experiment": FINDINGS_EXPERIMENT, "run": "short-a"}

    page.get_by_role("button", name="Remove them from the selection").click()
    page.wait_for_function("() => !location.search.includes('nope')")
    assert parse_qs(urlparse(page.url).query)["run"] == ["short-a"]
    assert notice.count() == 0


def test_selection_checked_against_all_runs(page, server):
    """A selected run that the search hides still exists: it is neither reported nor left out."""
    fake_jupyter(page, server)
    page.goto(findings_url(server, "compare", "q=short-b&run=short-a&run=plain&run=gone"))
    page.locator("[data-testid=missing-runs]", has_text="“gone”").wait_for()
    assert page.locator("[data-testid=notebook-button]").inner_text() == "Open 2 runs in notebook"


def table_runs(page) -> list[str]:
    return page.locator("[data-testid=runs-table] tbody tr[data-run]").evaluate_all("rows => rows.map((row) => row.dataset.run)")


@pytest.mark.parametrize("tab", ["parallel", "runs"])
def test_unknown_and_empty_brushes_ignored(page, server, tab):
    brushes = ["metric:nope:1:2", "param:batch_size:in:", "param:optimizer.name:in:sgd"]
    page.goto(findings_url(server, "" if tab == "runs" else tab, "&".join("brush=" + brush for brush in brushes)))
    notice = page.locator("[data-testid=ignored-brushes]")
    notice.wait_for()
    ignored = notice.locator(".brush-chip").evaluate_all("chips => chips.map((chip) => chip.dataset.brush)")
    assert ignored == ["metric:nope:1:2"]
    assert "no run has metric nope" in notice.inner_text()

    # Only the brush on optimizer.name filters: it keeps the runs that use sgd.
    if tab == "parallel":
        assert page.locator("[data-testid=parallel-count]").inner_text() == "2 of 5 runs kept"
    else:
        page.locator("[data-testid=brush-notice]", has_text="hide 3 runs").wait_for()
        assert sorted(table_runs(page)) == ["literal", "short-a"]

    page.get_by_role("button", name="Remove it from the URL").click()
    page.wait_for_function("() => !location.search.includes('nope')")
    assert parse_qs(urlparse(page.url).query)["brush"] == ["param:optimizer.name:in:sgd"]
    assert notice.count() == 0


def group_headers(page) -> list[str]:
    return page.locator("[data-testid=runs-table] tr.group-row").evaluate_all("rows => rows.map((row) => row.dataset.group)")


def test_literal_no_group_kept_apart(page, server):
    page.goto(findings_url(server, "", "group_by=group"))
    page.locator("tr.group-row").first.wait_for()
    # The runs without a group come last, under the empty key; "no group" is a value like any other.
    assert group_headers(page) == ["cohort-a", "cohort-b", "no group", ""]
    literal = page.locator('tr.group-row[data-group="no group"] .group-label')
    none = page.locator('tr.group-row[data-group=""] .group-label')
    assert literal.inner_text() == "no group"
    assert "group-none" not in literal.get_attribute("class")
    assert "group-none" in none.get_attribute("class")
    rows = page.locator("[data-testid=runs-table] tbody tr").evaluate_all(
        "rows => rows.map((row) => row.dataset.run || 'group:' + row.dataset.group)"
    )
    assert rows[-4:] == ["group:no group", "literal", "group:", "plain"]


@pytest.mark.parametrize("tab", ["runs", "charts"])
def test_unknown_group_by_shown_missing(page, server, tab):
    page.goto(findings_url(server, "" if tab == "runs" else tab, "group_by=param:doesnotexist"))
    select = page.get_by_label("Group runs by")
    select.wait_for()
    page.wait_for_function("() => document.querySelector('select[aria-label=\"Group runs by\"]').selectedIndex > 0")
    assert select.input_value() == "param:doesnotexist"
    chosen = select.evaluate("select => select.selectedOptions[0].textContent")
    assert chosen == "param doesnotexist (missing: no run has it)"


def test_group_means_legend_and_hover(page, server):
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(findings_url(server, "charts", "run=%s&run=short-a&run=short-b&group_by=group&agg=train/loss" % LONG_RUN))
    card = page.locator('.aggregate-chart[data-metric="train/loss"]')
    card.locator(".legend-row").first.wait_for()
    page.wait_for_function(
        "() => Number(document.querySelector('.aggregate-chart[data-metric=\"train/loss\"] .chart-plot').dataset.points) > 0"
    )
    # The group name and its run count are shown whole.
    for label in card.locator(".legend-label").all():
        assert label.evaluate("label => label.scrollWidth <= label.clientWidth")
    assert card.locator('.legend-row[data-group="cohort-b"] .legend-label').inner_text() == "cohort-b (1 run)"

    # cohort-b logs steps 0 to 65, cohort-a 0 to 119: at step 112 only cohort-a has runs.
    card.scroll_into_view_if_needed()
    over = card.locator(".u-over").bounding_box()
    page.mouse.move(over["x"] + over["width"] * 112 / 119, over["y"] + over["height"] / 2)
    page.wait_for_function(
        "() => document.querySelector('.aggregate-chart[data-metric=\"train/loss\"] .legend-x').textContent.startsWith('near step')"
    )
    counts = card.locator(".legend-step").all_inner_texts()
    assert counts[0].startswith("2 runs at 11")
    assert counts[1] == "ended at 65"
    ended = card.locator(".legend-row.ended").evaluate_all("rows => rows.map((row) => row.dataset.group)")
    assert ended == ["cohort-b"]
    screenshot(page, "findings-group-means")


def download_csv(page) -> list[list[str]]:
    with page.expect_download() as info:
        page.get_by_role("button", name="Download CSV").click()
    with open(info.value.path(), encoding="utf-8") as f:
        return list(csv.reader(f))


def table_header(page) -> list[str]:
    """Return the runs table's columns as the CSV names them: params by key, metrics as "<name> last" and so on."""
    return page.evaluate(
        """() => {
          const table = document.querySelector("[data-testid=runs-table]");
          const params = [...table.querySelectorAll("thead th.param-column button.sort")].map((button) => button.dataset.sort.slice(6));
          const metrics = [...table.querySelectorAll("thead th.metric-column")].map((th) => th.dataset.metric);
          return [...params, ...metrics.flatMap((name) => [name + " last", name + " min", name + " max"])];
        }"""
    )


@pytest.mark.parametrize(
    "query",
    [
        "",
        "param=optimizer.name&param=optimizer.weight_decay&metric=val/acc&metric=lr",
        "param=optimizer.weight_decay&param=optimizer.name&group_by=group&sort=param:lr:asc",
    ],
)
def test_runs_csv_columns_in_table_order(page, server, query):
    page.goto(findings_url(server, "", query))
    page.locator("[data-testid=runs-table] tbody tr[data-run]").first.wait_for()
    columns = table_header(page)
    assert columns
    header = download_csv(page)[0]
    # The fixed columns as the table shows them: Status, Run (id and name), Started, Duration, Tags.
    assert header[:6] == ["status", "run", "name", "started_at", "duration_secs", "tags"]
    assert header[6:] == columns


SHORT_B_PARAMS = {"lr": "0.001", "batch_size": "32", "optimizer.name": "adamw", "optimizer.weight_decay": "0.1"}


def test_runs_csv_columns_after_chip_toggles(page, server):
    page.goto(findings_url(server))
    page.locator("[data-testid=runs-table] tbody tr[data-run]").first.wait_for()
    params = page.get_by_role("group", name="Params")
    for chip in ["optimizer.weight_decay", "optimizer.weight_decay", "batch_size", "lr", "batch_size"]:
        before = page.url
        params.get_by_role("button", name=chip, exact=True).click()
        page.wait_for_function("before => location.href !== before", arg=before)
        chosen = parse_qs(urlparse(page.url).query, keep_blank_values=True)["param"]
        page.wait_for_function(
            "count => document.querySelectorAll('[data-testid=runs-table] thead th.param-column').length === count",
            arg=len(chosen),
        )
        columns = table_header(page)
        assert columns[: len(chosen)] == chosen
        assert download_csv(page)[0][6:] == columns
        # The cells follow the header: short-b has lr 0.001, batch_size 32, adamw and weight decay 0.1.
        cells = page.locator("[data-testid=runs-table] tbody tr[data-run='short-b'] td").all_inner_texts()
        assert cells[6 : 6 + len(chosen)] == [SHORT_B_PARAMS[key] for key in chosen]


def test_counters_and_rates_have_no_best(page, server):
    metrics = ["epoch", "iteration", "lr", "learning_rate", "time_secs", "train/loss"]
    page.goto(findings_url(server, "", "param=lr&" + "&".join("metric=" + name for name in metrics)))
    table = page.locator("[data-testid=runs-table]")
    table.locator("tbody tr[data-run]").first.wait_for()
    for name in metrics[:-1]:
        button = table.locator('th[data-metric="%s"] .direction-toggle' % name)
        assert button.get_attribute("data-direction") == "none"
        assert button.inner_text() == "best: none"
        assert table.locator('td.best-run[data-metric="%s"], td.best-stat[data-metric="%s"]' % (name, name)).count() == 0
    assert table.locator('th[data-metric="train/loss"] .direction-toggle').inner_text() == "best: min ↓"
    assert table.locator('td.best-run[data-metric="train/loss"]').count() == 1

    # The neutral button still switches: none, then min.
    table.locator('th[data-metric="epoch"] .direction-toggle').click()
    assert table.locator('th[data-metric="epoch"] .direction-toggle').inner_text() == "best: min ↓"
    assert table.locator('td.best-run[data-metric="epoch"]').count() >= 1


def test_small_and_plain_numbers_share_format(page, server):
    page.goto(findings_url(server, "", "param=lr&metric=lr"))
    table = page.locator("[data-testid=runs-table]")
    table.locator("tbody tr[data-run]").first.wait_for()
    index = table.locator("thead tr").first.locator("th").evaluate_all(
        "cells => cells.findIndex((cell) => cell.querySelector('button.sort[data-sort=\"param:lr\"]'))"
    )
    values = table.locator("tbody tr[data-run]").evaluate_all(
        "(rows, index) => Object.fromEntries(rows.map((row) => [row.dataset.run, row.children[index].textContent]))", index
    )
    assert values["short-a"] == "1e-4"
    assert values["plain"] == "0.001"
    assert values[LONG_RUN] == "0.01"
    last_lr = table.locator('tr[data-run="short-a"] td[data-metric="lr"][data-stat="last"]').inner_text()
    assert last_lr == "2.5e-5"


def test_unknown_experiment_says_so_once(page, server, console):
    console.allow("404")
    page.goto(server.url + "experiments/nope")
    message = page.locator("[data-view=experiment-error] .message-error")
    message.wait_for()
    assert message.inner_text() == "Experiment “nope” not found."
    page.get_by_role("link", name="Back to the overview").click()
    page.locator("[data-view=overview]").wait_for()

    page.goto(findings_url(server, "runs/nope"))
    message = page.locator("[data-view=run-error] .message-error")
    message.wait_for()
    assert message.inner_text() == "Run “nope” of experiment “findings” not found."
    page.get_by_role("link", name="Back to the runs of findings").click()
    page.locator("[data-view=experiment-runs]").wait_for()


def test_parallel_category_labels_have_background(page, server):
    page.goto(findings_url(server, "parallel", "axis_param=optimizer.name&axis_param=lr&axis_metric=train/loss"))
    axis = page.locator('g.pc-axis[data-axis="param:optimizer.name"]')
    axis.locator("text.pc-tick-label").first.wait_for()
    labels = axis.locator("text.pc-tick-label").all()
    backgrounds = axis.locator("rect.pc-label-background").all()
    assert [label.text_content() for label in labels] == ["adamw", "sgd"]
    assert len(backgrounds) == 2
    for label, background in zip(labels, backgrounds):
        text = label.evaluate("text => { const box = text.getBBox(); return [box.x, box.y, box.width, box.height]; }")
        rect = background.evaluate("rect => { const box = rect.getBBox(); return [box.x, box.y, box.width, box.height]; }")
        assert rect[0] <= text[0]
        assert rect[0] + rect[2] >= text[0] + text[2]
        assert rect[1] <= text[1]
        assert rect[1] + rect[3] >= text[1] + text[3]
    # The numeric axis keeps its plain labels.
    assert page.locator('g.pc-axis[data-axis="param:lr"] rect.pc-label-background').count() == 0
    screenshot(page, "findings-parallel-categories")
