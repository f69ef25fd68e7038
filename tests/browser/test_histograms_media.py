"""The dashboard's histograms, media and system metrics views, and best values in the runs table."""

from __future__ import annotations

import io
import math
import re
import time
import wave

import numpy as np
import pytest

from ..stores import new_run
from .conftest import ServerProcess, copy_to_docs, screenshot
from .store import png_bytes

pytestmark = pytest.mark.browser

EXPERIMENT = "vision"
#: A closed run with histograms, images, audio and system metrics.
RICH_RUN = "rich"
#: A closed run with training metrics only.
PLAIN_RUN = "plain"
#: A run kept open while the tests log media and histograms into it.
LIVE_RUN = "streaming"
BEST_EXPERIMENT = "best"

#: Steps of the "weights" histograms (even steps); "grads" are logged at the odd steps in between.
WEIGHT_STEPS = list(range(0, 41, 2))
IMAGE_STEPS = [0, 10, 20]


def wav_bytes(seconds: float = 0.2, rate: int = 8000) -> bytes:
    """Return a WAV file of a 440 Hz tone (mono, 16 bits)."""
    samples = (np.sin(2 * np.pi * 440 * np.arange(int(seconds * rate)) / rate) * 12000).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())
    return buffer.getvalue()


def write_rich_run(root: str) -> None:
    """Write a run with two histogram tags, images, audio, and system metrics sampled every second.

    Each histogram tag has its own steps: expman-rs 1.3 keeps one histogram
    per step when it closes a run.
    """
    run = new_run(root, EXPERIMENT, RICH_RUN, system_metrics_interval_secs=1)
    generator = np.random.default_rng(7)
    for step in range(50):
        run.log_vector({"train/loss": 1.0 / (step + 1), "train/acc": step / 50}, step=step)
    for step in WEIGHT_STEPS:
        # The distribution's centre moves from 0 to 4 over the steps.
        run.log_histogram("weights", generator.normal(step / 10, 1.0, 2000), step=step, bins=30)
        run.log_histogram("grads", generator.normal(0, 0.1 + step / 100, 500), step=step + 1, bins=20)
    for step in IMAGE_STEPS:
        run.log_image("samples", png_bytes(48 + step, 32), step=step)
    run.log_audio("tone", wav_bytes(), step=0)
    # At least two system samples, one second apart.
    time.sleep(2.5)
    run.close()


def write_best_runs(root: str) -> None:
    """Write runs ``a`` and ``b``, whose val/loss and val/acc have known last, min and max values."""
    values = {
        "a": {"val/loss": [1.0, 0.2, 0.5], "val/acc": [0.1, 0.9, 0.7]},
        "b": {"val/loss": [0.8, 0.4, 0.3], "val/acc": [0.2, 0.6, 0.95]},
    }
    for name, metrics in values.items():
        run = new_run(root, BEST_EXPERIMENT, name)
        for step in range(3):
            run.log_vector({metric: series[step] for metric, series in metrics.items()}, step=step)
        run.close()


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("histograms-media-store"))
    write_rich_run(root)
    plain = new_run(root, EXPERIMENT, PLAIN_RUN)
    for step in range(20):
        plain.log_vector({"train/loss": math.exp(-step / 5)}, step=step)
    plain.close()
    write_best_runs(root)

    live = new_run(root, EXPERIMENT, LIVE_RUN)
    live.log_vector({"train/loss": 1.0}, step=0)
    live.log_image("samples", png_bytes(40, 30), step=0)
    live.log_histogram("weights", np.linspace(-1, 1, 200), step=0, bins=10)
    yield {"root": root, "live": live}
    live.close()


@pytest.fixture(scope="module")
def server(store, tmp_path_factory):
    process = ServerProcess(store["root"], str(tmp_path_factory.mktemp("histograms-media-logs"))).launch()
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


def run_url(server, run: str, tab: str = "") -> str:
    return server.url + "experiments/%s/runs/%s%s" % (EXPERIMENT, run, "/" + tab if tab else "")


def histogram_card(page, tag: str):
    return page.locator('.histogram-card[data-tag="%s"]' % tag)


def media_card(page, tag: str):
    return page.locator('.media-card[data-tag="%s"]' % tag)


def wait_for_steps(page, tag: str, count: int) -> None:
    page.wait_for_function(
        "([tag, count]) => Number(document.querySelector(`.histogram-card[data-tag='${tag}']`)?.dataset.steps) === count",
        arg=[tag, count],
    )


def legend_number(card, label: str) -> float:
    """Return the first number after ``label`` in a histogram card's legend."""
    text = card.locator("[data-testid=histogram-legend]").inner_text()
    match = re.search(re.escape(label) + r"\s+(-?[0-9.e+-]+)", text)
    assert match, "no %r in the legend %r" % (label, text)
    return float(match.group(1))


def test_histogram_chart_per_tag(page, server):
    page.goto(run_url(server, RICH_RUN, "histograms"))
    wait_for_steps(page, "weights", len(WEIGHT_STEPS))
    wait_for_steps(page, "grads", len(WEIGHT_STEPS))

    weights = histogram_card(page, "weights")
    assert weights.locator("canvas").count() == 1
    assert page.locator(".tab.active").inner_text() == "Histograms (2)"
    # The last weights histogram is centred near 4, spread with a standard deviation of 1.
    assert legend_number(weights, "last step") == WEIGHT_STEPS[-1]
    assert abs(legend_number(weights, "median") - 4.0) < 0.3
    assert weights.locator(".histogram-bars rect").count() == 30

    # Hovering the left edge of the plot shows the first step, centred near 0.
    box = weights.locator(".u-over").bounding_box()
    page.mouse.move(box["x"] + 2, box["y"] + box["height"] / 2)
    page.wait_for_function(
        "() => /^step/.test(document.querySelector(\".histogram-card[data-tag='weights'] .histogram-values\").innerText)"
    )
    assert legend_number(weights, "step") == 0
    assert abs(legend_number(weights, "median")) < 0.3
    page.mouse.move(0, 0)

    page.reload()
    page.locator("[data-view=run-histograms]").wait_for()
    wait_for_steps(page, "weights", len(WEIGHT_STEPS))
    copy_to_docs(screenshot(page, "histograms"), "dashboard-histograms.png")


def test_media_slider_moves_steps(page, server):
    page.goto(run_url(server, RICH_RUN, "media"))
    samples = media_card(page, "samples")
    image = samples.locator("img")
    image.wait_for()
    assert page.locator(".tab.active").inner_text() == "Media (4)"
    assert "samples-00000020" in image.get_attribute("src")
    assert samples.locator("[data-testid=media-step]").inner_text() == "step 20"
    page.wait_for_function("image => image.complete && image.naturalWidth === 68", arg=image.element_handle())

    page.get_by_label("Step of samples").fill("0")
    page.wait_for_function("image => image.getAttribute('src').includes('samples-00000000')", arg=image.element_handle())
    assert samples.locator("[data-testid=media-step]").inner_text() == "step 0"
    page.wait_for_function("image => image.complete && image.naturalWidth === 48", arg=samples.locator("img").element_handle())

    page.get_by_label("Next samples").click()
    assert samples.locator("[data-testid=media-step]").inner_text() == "step 10"
    assert "samples-00000010" in samples.locator("img").get_attribute("src")

    audio = media_card(page, "tone").locator("audio")
    assert audio.get_attribute("controls") is not None
    assert audio.get_attribute("src").endswith("tone-00000000.wav")
    copy_to_docs(screenshot(page, "media"), "dashboard-media.png")


def test_system_group_on_charts(page, server):
    page.goto(run_url(server, RICH_RUN, "charts"))
    system = page.locator("[data-testid=system-charts]")
    system.wait_for()
    assert system.locator("h3").inner_text().lower() == "system"
    memory = system.locator('.chart-card[data-metric="mem.used_gb"]')
    memory.wait_for()
    page.wait_for_function(
        "() => Number(document.querySelector(\"[data-testid=system-charts] .chart-card[data-metric='mem.used_gb'] .chart-plot\")"
        "?.dataset.points) >= 2"
    )
    # System columns stay out of the training metrics' groups.
    assert page.locator('.chart-group:not(.system-group) .chart-card[data-metric="mem.used_gb"]').count() == 0
    assert page.locator('.chart-group:not(.system-group) .chart-card[data-metric="train/loss"]').count() == 1
    screenshot(page, "system")


def test_plain_run_hides_tabs(page, server):
    page.goto(run_url(server, PLAIN_RUN, "charts"))
    page.locator('.chart-card[data-metric="train/loss"]').wait_for()
    page.wait_for_load_state("networkidle")
    assert page.locator("[data-testid=system-charts]").count() == 0
    tabs = page.locator(".tabs .tab").all_inner_texts()
    assert not any(tab.startswith("Histograms") for tab in tabs)
    assert not any(tab.startswith("Media") for tab in tabs)

    page.goto(run_url(server, PLAIN_RUN, "histograms"))
    page.locator(".message-empty", has_text="logged no histograms").wait_for()
    page.goto(run_url(server, PLAIN_RUN, "media"))
    page.locator(".message-empty", has_text="logged no media").wait_for()


def stat_cell(page, run: str, metric: str, stat: str):
    return page.locator('tr[data-run="%s"] td[data-metric="%s"][data-stat="%s"]' % (run, metric, stat))


def toggle(page, metric: str):
    return page.locator('th.metric-column[data-metric="%s"] .direction-toggle' % metric)


def test_runs_table_best_values(page, server):
    page.goto(server.url + "experiments/" + BEST_EXPERIMENT)
    stat_cell(page, "a", "val/loss", "min").wait_for()
    expected = {
        ("a", "val/loss"): ("0.5", "0.2", "1"),
        ("b", "val/loss"): ("0.3", "0.3", "0.8"),
        ("a", "val/acc"): ("0.7", "0.1", "0.9"),
        ("b", "val/acc"): ("0.95", "0.2", "0.95"),
    }
    for (run, metric), (last, low, high) in expected.items():
        assert stat_cell(page, run, metric, "last").inner_text() == last, (run, metric)
        assert stat_cell(page, run, metric, "min").inner_text() == low, (run, metric)
        assert stat_cell(page, run, metric, "max").inner_text() == high, (run, metric)
    assert "at step 1" in stat_cell(page, "a", "val/loss", "min").get_attribute("title")

    # Directions guessed from the names: a loss is best low, an accuracy high.
    assert toggle(page, "val/loss").get_attribute("data-direction") == "min"
    assert toggle(page, "val/acc").get_attribute("data-direction") == "max"
    assert page.locator("td.best-run").count() == 2
    assert "best-run" in stat_cell(page, "a", "val/loss", "min").get_attribute("class")
    assert "best-run" in stat_cell(page, "b", "val/acc", "max").get_attribute("class")

    # Switching val/loss to "higher is better" moves its best cell, and survives a reload.
    toggle(page, "val/loss").click()
    page.wait_for_function("() => document.querySelector(\"th.metric-column[data-metric='val/loss'] .direction-toggle\").dataset.direction === 'max'")
    assert "best-run" in stat_cell(page, "a", "val/loss", "max").get_attribute("class")
    assert "best-run" not in stat_cell(page, "a", "val/loss", "min").get_attribute("class")
    page.reload()
    stat_cell(page, "a", "val/loss", "max").wait_for()
    assert toggle(page, "val/loss").get_attribute("data-direction") == "max"
    assert "best-run" in stat_cell(page, "a", "val/loss", "max").get_attribute("class")
    screenshot(page, "runs-best")

    # The toggle goes min, max, none, and round again.
    toggle(page, "val/loss").click()
    page.wait_for_function("() => document.querySelector(\"th.metric-column[data-metric='val/loss'] .direction-toggle\").dataset.direction === 'none'")
    assert page.locator("td.best-run").count() == 1
    toggle(page, "val/loss").click()
    page.wait_for_function("() => document.querySelector(\"th.metric-column[data-metric='val/loss'] .direction-toggle\").dataset.direction === 'min'")

    # The metric chips still pick the columns: a metric's three columns go together.
    chip = page.get_by_role("group", name="Metrics").get_by_role("button", name="val/acc")
    chip.click()
    page.wait_for_function("() => document.querySelectorAll('th.metric-column').length === 1")
    assert stat_cell(page, "a", "val/acc", "max").count() == 0
    assert page.locator('tr[data-run="a"] td.metric-stat').count() == 3


def test_live_image_appears(page, server, store):
    page.goto(run_url(server, LIVE_RUN, "media"))
    samples = media_card(page, "samples")
    samples.locator("img").wait_for()
    page.locator(".live-badge", has_text="live").wait_for()
    page.evaluate("() => { window.notReloaded = true; }")

    store["live"].log_image("samples", png_bytes(64, 30), step=7)
    page.wait_for_function("() => document.querySelector(\".media-card[data-tag='samples']\")?.dataset.count === '2'")
    assert samples.locator("[data-testid=media-step]").inner_text() == "step 7"
    assert "samples-00000007" in samples.locator("img").get_attribute("src")
    assert page.evaluate("() => window.notReloaded") is True


def test_live_histogram_grows(page, server, store):
    page.goto(run_url(server, LIVE_RUN, "histograms"))
    wait_for_steps(page, "weights", 1)
    page.locator(".live-badge", has_text="live").wait_for()

    store["live"].log_histogram("weights", np.linspace(0, 2, 200), step=3, bins=10)
    wait_for_steps(page, "weights", 2)
    assert legend_number(histogram_card(page, "weights"), "last step") == 3

    # A tag first logged while the page is open gets its own chart.
    store["live"].log_histogram("biases", np.linspace(-1, 0, 50), step=4, bins=5)
    wait_for_steps(page, "biases", 1)
