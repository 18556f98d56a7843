"""What the real-browser tests do to a Streamlit page, in one place: wait for a rerun to end, pick from a select box,
type into a field, read a metric, open a page from the sidebar, take a whole-page screenshot.

The waits read the state the page itself shows (Streamlit marks its root ``data-test-script-state``; plotly keeps
the size it last drew at) rather than sleeping for a guessed time, except for the one round trip a rerun needs to
start after a click, which the page cannot show yet.
"""

from __future__ import annotations

from pathlib import Path

import pytest

playwright = pytest.importorskip("playwright.sync_api")
expect, PlaywrightTimeout = playwright.expect, playwright.TimeoutError

MODEL_WAIT = 180_000  # ms: loading TensorFlow, MTCNN and dlib on a busy 2-core machine
CHARTS = "[data-testid=stPlotlyChart] .main-svg"
PHOTOS = "[data-testid=stImage] img, [data-testid=stImageContainer] img"
RERUN_STARTS_MS = 400  # after a click or Enter: the rerun it asks for has not reached the page yet

# The script is not running, no element waits to be redrawn, and (when asked) every image has loaded.
SETTLED = """images => document.querySelector('[data-testid=stApp]')?.dataset.testScriptState === 'notRunning'
    && !document.querySelector('[data-testid=stStatusWidget], [data-testid=stSkeleton], [data-stale=true]')
    && (!images || [...document.querySelectorAll('[data-testid=stImage] img, [data-testid=stImageContainer] img')]
        .every(img => img.complete && img.naturalWidth > 0))"""
# Every plotly chart in sight has been drawn at the width its box has now (it redraws itself after a resize), then two
# frames have been painted: what a screenshot taken next shows is what a reader of this window size sees.
DRAWN_AT_THIS_SIZE = """() => [...document.querySelectorAll('[data-testid=stPlotlyChart] .js-plotly-plot')]
        .filter(chart => chart.checkVisibility() && chart.getBoundingClientRect().width > 0)  // a hidden tab's wait
        .every(chart => chart._fullLayout && Math.abs(chart._fullLayout.width - chart.getBoundingClientRect().width) < 2)
    && new Promise(painted => requestAnimationFrame(() => requestAnimationFrame(() => painted(true))))"""


def settle(page, timeout: int = 60_000, images: bool = True) -> None:  # noqa: ANN001 - a Playwright page
    """Wait until the script has finished its rerun and (``images``) every image has loaded: before a click, a
    reading or a screenshot. ``images=False`` where an image may never load (a hostile name's link)."""
    page.wait_for_timeout(RERUN_STARTS_MS)
    page.wait_for_function(SETTLED, arg=images, timeout=timeout, polling=100)


def drawn(page, timeout: int = 30_000) -> None:  # noqa: ANN001
    """Wait until the charts have redrawn at the window's current size and the result is painted."""
    page.wait_for_function(DRAWN_AT_THIS_SIZE, timeout=timeout, polling=100)


def screenshot(page, path: Path) -> None:  # noqa: ANN001
    """The whole page: Streamlit scrolls inside its own container, so grow the window to the content first."""
    height = page.evaluate("document.querySelector('[data-testid=stMain]').scrollHeight")
    size = page.viewport_size
    page.set_viewport_size({"width": size["width"], "height": max(1000, int(height) + 100)})
    drawn(page)
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size(size)


def choose(page, label: str, option: str, tries: int = 3, exact: bool = True) -> None:  # noqa: ANN001
    """Open the visible select box called ``label`` (hidden tabs hold others) and click ``option`` (``exact``, or
    the first option that contains it).

    The list is opened from the keyboard: a click on the box focused it without opening it about one time in three
    (each a 10 s wait before the next try). A rerun that redraws the box closes its list: it is opened again, up to
    ``tries`` times, before the test fails.
    """
    box = page.get_by_test_id("stSelectbox").filter(has_text=label).filter(visible=True).first
    item = page.get_by_role("option", name=option, exact=exact).first
    for _ in range(tries):
        settle(page)
        box.get_by_role("combobox").press("ArrowDown")
        try:
            item.click(timeout=10_000)
            return
        except PlaywrightTimeout:
            page.keyboard.press("Escape")
    raise AssertionError(f"the select box {label!r} never offered {option!r}")


def selected(page, label: str) -> str:  # noqa: ANN001
    """The text the visible select box called ``label`` shows."""
    return page.get_by_test_id("stSelectbox").filter(has_text=label).filter(visible=True).first.locator("input") \
        .input_value()


def type_into(page, label: str, text: str) -> None:  # noqa: ANN001
    """Fill a visible text or number input and commit it (Streamlit sends the value on Enter)."""
    field = page.get_by_label(label, exact=True).filter(visible=True).first
    field.fill(text)
    field.press("Enter")


def go_to(page, title: str) -> None:  # noqa: ANN001
    """Open a page through the sidebar (same browser session) and wait for its heading."""
    page.get_by_test_id("stSidebarNav").get_by_role("link", name=title).click()
    page.get_by_role("heading", name=title).first.wait_for(timeout=60_000)


def metric(page, label: str):  # noqa: ANN001, ANN201 - Playwright page and locator
    """The value of the visible st.metric called ``label`` (a locator: ``expect`` waits for reruns to finish)."""
    box = page.get_by_test_id("stMetric").filter(visible=True).filter(
        has=page.get_by_test_id("stMetricLabel").get_by_text(label, exact=True)).first
    return box.get_by_test_id("stMetricValue")


def wait_for_charts(page, count: int) -> None:  # noqa: ANN001 - Playwright page
    """Wait until the ``count``-th chart is drawn (a plotly chart holds two .main-svg, so count charts, not svgs)."""
    page.locator("[data-testid=stPlotlyChart]").nth(count - 1).locator(".main-svg").first.wait_for(timeout=60_000)


def workspace_of(page) -> str:  # noqa: ANN001 - a Playwright page
    """The workspace id a browser page is in (its ``?workspace=`` query parameter)."""
    from urllib.parse import parse_qs, urlsplit

    return parse_qs(urlsplit(page.url).query)["workspace"][0]
