"""Real browser: every page reads at 800 px wide, on a 1280×720 projector and at 1400 px (issue 12).

Each page is filled the way a user would leave it (a dataset audited, a run trained, photos named, two photos
compared and calibrated), then looked at in each window size: no metric, button or tab label may be cut
(Streamlit ends a cut label with "…"), nothing may stick out to the right of the page, and at 800 px the
main content keeps room to read (the sidebar must not take it). Each view is saved as a screenshot.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.browser import MODEL_WAIT, PlaywrightTimeout, choose, drawn, expect, metric, screenshot, settle, wait_for_charts
from tests.conftest import PAGE_WORKSPACE
from tests.test_browser_predict import server_with_run  # noqa: F401 - the module's one trained run (a fixture)
from tests.test_browser_verify import photo

pytestmark = pytest.mark.browser

VIEWPORTS = ((800, 900), (1280, 720), (1400, 900))  # a narrow window, a projector, a desktop
MIN_MAIN_WIDTH = 480  # px of content the main column keeps at 800 px
FIVE = re.compile(r"^five_celebrity_faces\b")  # the shared dataset, whatever folder offers it
DATASET = re.compile(r"^Dataset$")  # the pages' dataset box

# What a reader would see cut: a metric, button or tab whose text is wider than the box that shows it (its own
# box or any clipping box around it, up to the page), and anything that sticks out to the right of the page.
LAYOUT = """() => {
    const main = document.querySelector('[data-testid=stMain]');
    const block = document.querySelector('[data-testid=stMainBlockContainer]');
    const style = getComputedStyle(block);
    const shown = el => el.checkVisibility({checkOpacity: true, checkVisibilityCSS: true})
        && el.getBoundingClientRect().height > 0 && !el.closest('details:not([open]) > :not(summary)');
    const clips = el => getComputedStyle(el).overflowX !== 'visible';
    // A piece of text is cut when its own box hides some of it ("…"), or a clipping box around it ends first.
    const isCut = el => (clips(el) && el.scrollWidth > el.clientWidth + 1) || (() => {
        const right = el.getBoundingClientRect().right;
        for (let box = el.parentElement; box && box !== main.parentElement; box = box.parentElement) {
            if (clips(box) && right > box.getBoundingClientRect().right + 1) return true;
        }
        return false;
    })();
    const ownText = el => [...el.childNodes].some(n => n.nodeType === Node.TEXT_NODE && n.textContent.trim());
    const cut = [];
    for (const target of main.querySelectorAll('[data-testid=stMetricLabel], [data-testid=stMetricValue], '
                                               + 'button, [data-testid=stTab], label')) {
        if (!shown(target)) continue;
        const texts = [target, ...target.querySelectorAll('*')].filter(  // an icon's ligature name ("add") is no text
            el => ownText(el) && shown(el) && el.getBoundingClientRect().width >= 24
                  && !getComputedStyle(el).fontFamily.includes('Material'));
        if (texts.some(isCut)) cut.push(target.innerText.trim().replace(/\\s+/g, ' ').slice(0, 60));
    }
    const pageRight = main.getBoundingClientRect().right;
    const wide = [...main.querySelectorAll('[data-testid=stDataFrame], [data-testid=stPlotlyChart], '
        + '[data-testid=stHorizontalBlock], [data-testid=stElementContainer]')]
        .filter(el => shown(el) && el.getBoundingClientRect().right > pageRight + 1)
        .map(el => `${el.getAttribute('data-testid')} to ${Math.round(el.getBoundingClientRect().right)} px of `
                   + `${Math.round(pageRight)}: ${el.innerText.trim().split('\\n')[0].slice(0, 40)}`);
    return {cut, wide,
            mainWidth: block.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight),
            overflow: main.scrollWidth - main.clientWidth};
}"""


def check_layout(page, name: str, artifacts_dir: Path) -> None:  # noqa: ANN001 - a Playwright page
    """Look at the page in each window size: save a screenshot, then assert that it reads (every size checked
    before failing, so the message lists all that is wrong)."""
    problems = []
    for width, height in VIEWPORTS:
        page.set_viewport_size({"width": width, "height": height})
        settle(page)
        drawn(page)  # plotly redraws at the new width
        found = page.evaluate(LAYOUT)
        screenshot(page, artifacts_dir / f"layout_{name}_{width}.png")
        if found["cut"]:
            problems.append(f"{width} px: cut labels {found['cut']}")
        if found["wide"] or found["overflow"] > 1:
            problems.append(f"{width} px: wider than the page by {found['overflow']} px: {found['wide']}")
        if width == VIEWPORTS[0][0] and found["mainWidth"] < MIN_MAIN_WIDTH:
            problems.append(f"{width} px: the main content is only {found['mainWidth']:.0f} px wide")
    page.set_viewport_size({"width": 1400, "height": 1000})
    assert not problems, f"{name} does not read everywhere:\n" + "\n".join(problems)
    assert "Traceback" not in page.content()
    assert page.foreign_requests == []


@pytest.fixture(scope="module")
def app_url(server_with_run: str, browser) -> str:  # noqa: ANN001, F811 - Playwright's browser
    """The server, once a first visitor has been through it: that visit (and only it) arrives before app.py ran
    even once, so Streamlit draws its default 300 px sidebar from the legacy ``pages/`` listing until a reload."""
    context = browser.new_context()
    first = context.new_page()
    first.goto(f"{server_with_run}/?workspace={PAGE_WORKSPACE}")
    first.get_by_role("heading", name="FaceLab").first.wait_for(timeout=60_000)
    context.close()
    return server_with_run


def pick(page, label: re.Pattern, option: re.Pattern) -> None:  # noqa: ANN001
    """Choose by patterns, from the keyboard: the box whose name matches ``label``, the option matching ``option``
    (the shared dataset, whatever folder offers it; choose() takes texts). Again if a rerun redrew the box and
    closed its list."""
    for attempt in range(3):
        settle(page, timeout=MODEL_WAIT)  # a click on a box being redrawn is lost
        page.get_by_role("combobox", name=label).press("ArrowDown")  # opens the list without a click to aim
        try:
            page.get_by_role("option", name=option).click(timeout=10_000)
            return
        except PlaywrightTimeout:
            if attempt == 2:
                raise


def open_app(page, url: str, path: str, heading: str) -> None:  # noqa: ANN001
    """Open a page of the app in the workspace that holds the trained run, at desktop width."""
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.goto(f"{url}/{path}?workspace={PAGE_WORKSPACE}")
    page.get_by_role("heading", name=heading).first.wait_for(timeout=60_000)
    settle(page, timeout=MODEL_WAIT)  # a click on a box being redrawn is lost


def test_home_reads_at_every_width(page, app_url: str, artifacts_dir: Path) -> None:
    open_app(page, app_url, "", "FaceLab")
    check_layout(page, "home", artifacts_dir)


def test_dataset_tabs_read_at_every_width(page, app_url: str, artifacts_dir: Path) -> None:
    open_app(page, app_url, "dataset", "Dataset")
    pick(page, DATASET, FIVE)
    expect(metric(page, "People")).to_have_text("5", timeout=60_000)
    wait_for_charts(page, 3)
    check_layout(page, "dataset_audit", artifacts_dir)
    for tab, name in (("Import a zip", "dataset_import"), ("Builder", "dataset_builder")):
        page.get_by_role("tab", name=tab).click()
        settle(page)
        check_layout(page, name, artifacts_dir)


def test_predict_reads_at_every_width(page, app_url: str, artifacts_dir: Path) -> None:
    open_app(page, app_url, "predict", "Predict")
    page.get_by_text("24 of 24 photo(s)").wait_for(timeout=MODEL_WAIT)
    check_layout(page, "predict", artifacts_dir)


def test_train_reads_at_every_width(page, app_url: str, artifacts_dir: Path) -> None:
    """A run trained on the page (its results shown) above the runs table and its actions."""
    open_app(page, app_url, "train", "Train")
    pick(page, DATASET, FIVE)
    choose(page, "Face detector", "dlib HOG")
    choose(page, "Head", "Nearest centroid (no training)")
    page.get_by_text("Estimated time").first.wait_for(timeout=MODEL_WAIT)
    page.get_by_role("button", name="Start training").click()
    page.get_by_text("Saved run").first.wait_for(timeout=MODEL_WAIT)
    wait_for_charts(page, 1)  # the confusion matrix (a centroid run has no learning curves)
    check_layout(page, "train", artifacts_dir)


def test_verify_reads_at_every_width(page, app_url: str, artifacts_dir: Path) -> None:
    """Two photos compared, the reference dataset calibrated, searched and mapped: every section of the page."""
    open_app(page, app_url, "verify", "Verify")
    choose(page, "Detector", "dlib HOG")  # the run's detector: the dataset's embeddings are cached already
    page.get_by_role("heading", name="Calibration").wait_for(timeout=MODEL_WAIT)  # drawn once the models loaded
    pick(page, re.compile("^Dataset for calibration"), FIVE)
    uploads = page.locator("[data-testid=stFileUploader] input[type=file]")
    uploads.first.wait_for(state="attached", timeout=MODEL_WAIT)
    uploads.nth(0).set_input_files(photo("madonna", 0))
    page.get_by_text("Add the second photo").wait_for(timeout=MODEL_WAIT)
    uploads.nth(1).set_input_files(photo("madonna", 1))
    page.get_by_text("Same person", exact=True).wait_for(timeout=MODEL_WAIT)
    settle(page)
    page.get_by_role("button", name="Calibrate on five_celebrity_faces").click()
    expect(metric(page, "AUC")).to_have_text(re.compile(r"\d\.\d{4}"), timeout=MODEL_WAIT)
    # Calibrating embedded the dataset, so the 1:N search and the map are drawn without being asked for.
    page.get_by_role("heading", name="Embedding map").wait_for(timeout=MODEL_WAIT)
    wait_for_charts(page, 6)  # three barcodes, the histogram and ROC curve, the map
    check_layout(page, "verify", artifacts_dir)
