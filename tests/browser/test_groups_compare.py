"""The dashboard's Compare view, run groups in the runs table and overview, and aggregate bands."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import pytest

from .conftest import ServerProcess, copy_to_docs, screenshot
from .store import GROUP_STEPS, GROUPS_EXPERIMENT, GROUPS_PROJECT, LiveRun, group_loss, write_groups_store

pytestmark = pytest.mark.browser

LIVE_RUN = "live"
LIVE_GROUP = "live-cohort"


def js_number(value: float) -> str:
    """Format a number as the dashboard's formatNumber does for values between 1e-3 and 1e6."""
    rounded = float("%.5g" % value)
    return str(int(rounded)) if rounded.is_integer() else repr(rounded)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("groups-store"))
    write_groups_store(root)
    live = LiveRun(root, GROUPS_EXPERIMENT, LIVE_RUN, project=GROUPS_PROJECT, group=LIVE_GROUP)
    yield {"root": root, "live": live}
    live.stop()


@pytest.fixture(scope="module")
def server(store, tmp_path_factory):
    process = ServerProcess(store["root"], str(tmp_path_factory.mktemp("groups-logs"))).launch()
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


def experiment_url(server, tab: str = "", query: str = "") -> str:
    url = server.url + "experiments/" + GROUPS_EXPERIMENT
    if tab:
        url += "/" + tab
    if query:
        url += "?" + query
    return url


def query_of(page) -> dict[str, list[str]]:
    return parse_qs(urlparse(page.url).query)


def diff_keys(page) -> list[str]:
    return page.locator("[data-testid=diff-table] tbody tr").evaluate_all("rows => rows.map(row => row.dataset.key)")


def wait_for_legend_points(page, run: str, minimum: int) -> int:
    """Wait until the compare chart draws at least ``minimum`` points of a run; return how many it draws."""
    row = page.locator('[data-testid=compare-chart] .legend-row[data-run="%s"]' % run)
    page.wait_for_function(
        "([run, minimum]) => {"
        "  const row = document.querySelector(`[data-testid=compare-chart] .legend-row[data-run='${run}']`);"
        "  return row !== null && Number(row.dataset.points) >= minimum; }",
        arg=[run, minimum],
    )
    return int(row.get_attribute("data-points"))


def test_compare_lists_what_differs(page, server):
    runs = ["lr-0.1-s1", "lr-0.1-s2", "lr-0.01-s1"]
    page.goto(experiment_url(server, "compare", "&".join("run=" + run for run in runs)))
    page.locator("[data-testid=diff-table]").wait_for()

    # Status, tags and batch_size are the same in the three runs, so only these differ.
    assert diff_keys(page) == ["group", "param:lr", "param:seed"]
    header = page.locator("[data-testid=diff-table] thead th.compare-run").all_inner_texts()
    assert header == runs
    lr_cells = page.locator('[data-testid=diff-table] tr[data-key="param:lr"] td').all_inner_texts()
    assert lr_cells == ["0.1", "0.1", "0.01"]
    assert page.get_by_test_id("diff-count").inner_text() == "3 of 6 differ"

    page.get_by_label("Show the rows that are the same too").check()
    page.wait_for_url("**show=all**")
    assert diff_keys(page) == ["status", "group", "tags", "param:batch_size", "param:lr", "param:seed"]


def test_compare_metrics_last_and_best(page, server):
    runs = ["lr-0.1-s1", "lr-0.01-s2", "solo"]
    page.goto(experiment_url(server, "compare", "&".join("run=" + run for run in runs)))
    row = page.locator('[data-testid=metrics-table] tr[data-metric="train/loss"]')
    row.wait_for()

    expected_last = {
        "lr-0.1-s1": group_loss(0.1, 1, GROUP_STEPS - 1),
        "lr-0.01-s2": group_loss(0.01, 2, GROUP_STEPS - 1),
        "solo": 3.0 - 19 * 0.1,
    }
    for run, value in expected_last.items():
        last = row.locator('td[data-run="%s"] .metric-last' % run).inner_text()
        assert last.split()[-1] == js_number(value), run
    # train/loss is best at its minimum: run lr-0.1-s1 reaches the lowest.
    assert row.locator("td.best-run").get_attribute("data-run") == "lr-0.1-s1"


def test_compare_plots_metric_against_metric(page, server):
    runs = ["lr-0.1-s1", "lr-0.1-s3", "solo"]
    page.goto(experiment_url(server, "compare", "&".join("run=" + run for run in runs)))
    chart = page.get_by_test_id("compare-chart")
    chart.wait_for()
    # Without a choice in the URL the chart shows the loss against the step.
    assert chart.get_attribute("data-x") == "step"
    assert chart.get_attribute("data-y") == "train/loss"
    assert wait_for_legend_points(page, "lr-0.1-s1", GROUP_STEPS) == GROUP_STEPS

    page.get_by_label("x axis").select_option("epoch")
    page.wait_for_url("**xmetric=epoch**")
    assert chart.get_attribute("data-x") == "epoch"
    # Every point pairs with the epoch logged at its own step; seed 3 logs every other step.
    assert wait_for_legend_points(page, "lr-0.1-s1", GROUP_STEPS) == GROUP_STEPS
    assert wait_for_legend_points(page, "lr-0.1-s3", GROUP_STEPS // 2) == GROUP_STEPS // 2
    assert wait_for_legend_points(page, "solo", 20) == 20
    last = chart.locator('.legend-row[data-run="lr-0.1-s1"] .legend-value').inner_text()
    assert last == "epoch 9 · train/loss %s · step %d" % (js_number(group_loss(0.1, 1, GROUP_STEPS - 1)), GROUP_STEPS - 1)
    copy_to_docs(screenshot(page, "compare"), "dashboard-compare.png")

    # The choice is in the URL, so a reload shows the same view.
    page.reload()
    chart.wait_for()
    assert chart.get_attribute("data-x") == "epoch"
    assert page.get_by_label("x axis").input_value() == "epoch"


def test_compare_follows_live_run(page, server):
    page.goto(experiment_url(server, "compare", "run=%s&run=lr-0.1-s1&ymetric=train/loss" % LIVE_RUN))
    before = wait_for_legend_points(page, LIVE_RUN, 1)
    assert wait_for_legend_points(page, LIVE_RUN, before + 5) >= before + 5


def test_compare_edits_selection_and_reports_missing(page, server):
    page.goto(experiment_url(server, "compare", "run=lr-0.1-s1&run=gone"))
    page.get_by_text("Run not found in this experiment: “gone”.").wait_for()

    page.get_by_label("Add a run to the comparison").select_option("solo")
    page.wait_for_url("**run=solo**")
    assert query_of(page)["run"] == ["lr-0.1-s1", "gone", "solo"]
    page.get_by_label("Remove lr-0.1-s1 from the comparison").click()
    page.wait_for_function("() => !location.search.includes('lr-0.1-s1')")
    assert query_of(page)["run"] == ["gone", "solo"]


def test_compare_without_selection_explains(page, server):
    page.goto(experiment_url(server, "compare"))
    page.get_by_text("Select runs in the runs table to compare them.").wait_for()


def table_rows(page) -> list[str]:
    """Return the runs table's body rows: "group:<key>" for a group's header, else the run id."""
    return page.locator("[data-testid=runs-table] tbody tr").evaluate_all(
        "rows => rows.map(row => row.classList.contains('group-row') ? 'group:' + row.dataset.group : row.dataset.run)"
    )


def test_overview_groups_experiments_by_project(page, server):
    page.goto(server.url)
    page.locator("[data-testid=experiments] tr.project-row").first.wait_for()
    rows = page.locator("[data-testid=experiments] tbody tr").evaluate_all(
        "rows => rows.map(row => row.classList.contains('project-row') ? 'project:' + row.dataset.project : row.dataset.experiment)"
    )
    # Projects in name order, the experiments without one last.
    assert rows == ["project:text", "nlp", "project:vision-2026", "sweep", "sweep-b", "project:", "scratch"]
    heading = page.locator('[data-testid=experiments] tr.project-row[data-project="vision-2026"]').inner_text()
    assert "2 experiments" in heading


def test_runs_table_groups_by_group(page, server):
    page.goto(experiment_url(server))
    page.locator("[data-testid=runs-table] tbody tr").first.wait_for()
    page.get_by_label("Group runs by").select_option("group")
    page.wait_for_url("**group_by=group**")

    rows = table_rows(page)
    headers = [row for row in rows if row.startswith("group:")]
    assert headers == ["group:live-cohort", "group:lr-0.01", "group:lr-0.1", "group:"]
    start = rows.index("group:lr-0.1")
    assert sorted(rows[start + 1 : start + 4]) == ["lr-0.1-s1", "lr-0.1-s2", "lr-0.1-s3"]
    assert rows[-2:] == ["group:", "solo"]
    header = page.locator('tr.group-row[data-group="lr-0.1"]')
    assert "3 runs" in header.inner_text()
    copy_to_docs(screenshot(page, "runs-grouped"), "dashboard-groups.png")

    # A group folds, and the URL keeps it folded.
    header.locator(".group-toggle").click()
    page.wait_for_url("**collapsed=lr-0.1**")
    assert header.locator(".group-toggle").get_attribute("aria-expanded") == "false"
    assert not any(row.startswith("lr-0.1-") for row in table_rows(page))
    page.reload()
    page.locator('tr.group-row[data-group="lr-0.1"]').wait_for()
    assert not any(row.startswith("lr-0.1-") for row in table_rows(page))
    assert page.get_by_label("Group runs by").input_value() == "group"

    # The checkbox of a group selects its runs.
    page.get_by_label("Select the runs of group lr-0.01").check()
    page.wait_for_url("**run=**")
    assert sorted(query_of(page)["run"]) == ["lr-0.01-s1", "lr-0.01-s2"]


def test_runs_table_groups_by_param_and_status(page, server):
    page.goto(experiment_url(server, query="group_by=param:lr"))
    page.locator("tr.group-row").first.wait_for()
    headers = [row for row in table_rows(page) if row.startswith("group:")]
    # Numbers in numeric order: 0.02 is the live run's learning rate.
    assert headers == ["group:0.01", "group:0.02", "group:0.1", "group:0.5"]

    page.get_by_label("Group runs by").select_option("status")
    page.wait_for_url("**group_by=status**")
    page.wait_for_function("() => document.querySelector('tr.group-row')?.dataset.group === 'running'")
    headers = [row for row in table_rows(page) if row.startswith("group:")]
    assert headers == ["group:running", "group:finished", "group:failed"]


def band_pixels(page, metric: str, rgb: tuple[int, int, int], alpha: float) -> int:
    """Count the pixels of a chart's canvas painted with colour ``rgb`` at opacity ``alpha`` alone, as a band fill is.

    The canvas is transparent, so such a pixel reads back as ``rgb`` with that alpha.
    """
    return page.locator('.chart-card[data-metric="%s"] canvas' % metric).evaluate(
        "(canvas, [rgb, alpha]) => {"
        "  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;"
        "  let count = 0;"
        "  for (let i = 0; i < data.length; i += 4) {"
        "    const close = Math.abs(data[i] - rgb[0]) <= 8 && Math.abs(data[i + 1] - rgb[1]) <= 8 && Math.abs(data[i + 2] - rgb[2]) <= 8;"
        "    if (close && Math.abs(data[i + 3] - alpha * 255) <= 8) count += 1;"
        "  }"
        "  return count; }",
        [list(rgb), alpha],
    )


def group_legend(page, metric: str, group: str):
    return page.locator('.aggregate-chart[data-metric="%s"] .legend-row[data-group="%s"]' % (metric, group))


def test_aggregate_draws_mean_and_band(page, server):
    runs = ["lr-0.1-s1", "lr-0.1-s2", "lr-0.1-s3", "lr-0.01-s1", "lr-0.01-s2"]
    page.goto(experiment_url(server, "charts", "&".join("run=" + run for run in runs)))
    page.locator('.chart-card[data-metric="train/loss"] .chart-plot').wait_for()
    page.get_by_label("Group runs by").select_option("group")
    page.wait_for_url("**group_by=group**")
    page.locator('.chart-card[data-metric="train/loss"] [data-testid=aggregate-toggle]').click()
    page.wait_for_url("**agg=train%2Floss**")
    chart = page.locator('.aggregate-chart[data-metric="train/loss"]')
    chart.wait_for()

    groups = chart.locator(".legend-row").evaluate_all("rows => rows.map(row => [row.dataset.group, row.dataset.runs])")
    assert groups == [["lr-0.01", "2"], ["lr-0.1", "3"]]
    # At the last step, 99, seed 3 has ended (it logs even steps only), so the band spans seeds 1 and 2.
    last = GROUP_STEPS - 1
    low, high = group_loss(0.1, 1, last), group_loss(0.1, 2, last)
    value = group_legend(page, "train/loss", "lr-0.1").locator(".legend-value")
    page.wait_for_function("element => element.textContent.startsWith('mean')", arg=value.element_handle())
    assert value.inner_text() == "mean %s (%s – %s)" % (js_number((low + high) / 2), js_number(low), js_number(high))
    assert group_legend(page, "train/loss", "lr-0.1").locator(".legend-step").inner_text() == "2 runs at %d" % last
    # The band of group lr-0.1 (the third colour, #10b981) is filled, not only outlined.
    page.mouse.move(0, 0)
    assert band_pixels(page, "train/loss", (0x10, 0xB9, 0x81), 0.18) > 500

    page.get_by_label("Band around the mean").select_option("std")
    page.wait_for_url("**band=std**")
    page.wait_for_function("element => element.textContent.includes('±')", arg=value.element_handle())
    assert value.inner_text() == "mean %s ± %s" % (js_number((low + high) / 2), js_number((high - low) / 2))

    # Hovering shows the values at the cursor.
    chart.scroll_into_view_if_needed()
    box = chart.locator("canvas").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.5)
    page.wait_for_function(
        "() => document.querySelector('.aggregate-chart .legend-x').textContent.startsWith('near step ')"
    )
    assert "±" in value.inner_text()

    page.reload()
    chart.wait_for()
    assert page.get_by_label("Band around the mean").input_value() == "std"


def test_aggregate_screenshot_for_docs(page, server):
    runs = ["lr-0.1-s1", "lr-0.1-s2", "lr-0.1-s3", "lr-0.01-s1", "lr-0.01-s2", "solo"]
    query = "&".join("run=" + run for run in runs) + "&group_by=group&agg=train/loss&agg=epoch"
    # Tall enough for both charts, so that the page needs no scrolling to hover one.
    page.set_viewport_size({"width": 1400, "height": 1200})
    page.goto(experiment_url(server, "charts", query))
    chart = page.locator('.aggregate-chart[data-metric="train/loss"]')
    chart.wait_for()
    page.wait_for_function("() => document.querySelectorAll('.aggregate-chart .chart-plot canvas').length === 2")
    box = chart.locator("canvas").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.25, box["y"] + box["height"] * 0.5)
    page.wait_for_timeout(200)
    copy_to_docs(screenshot(page, "charts-aggregate"), "dashboard-aggregate.png")


def test_aggregate_extends_with_live_run(page, server):
    page.goto(experiment_url(server, "charts", "run=%s&run=lr-0.1-s1&group_by=group&agg=train/loss" % LIVE_RUN))
    plot = '.aggregate-chart[data-metric="train/loss"] .chart-plot'
    page.wait_for_function("selector => Number(document.querySelector(selector)?.dataset.points) > 0", arg=plot)
    before = int(page.locator(plot).get_attribute("data-points"))
    page.wait_for_function("([selector, before]) => Number(document.querySelector(selector).dataset.points) >= before + 5", arg=[plot, before])
    assert group_legend(page, "train/loss", LIVE_GROUP).get_attribute("data-runs") == "1"
