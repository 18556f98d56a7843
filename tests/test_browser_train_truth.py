"""Real browser, issue 12: time, runs and downloads that tell the truth.

A first training says its estimate is rough, shows "estimating…" rather than a wild ETA from its first photos, and
ends with its time in parts; the next estimate uses the speed it measured. After a reload the dataset is still the
chosen one and the runs table reopens the run's report. Every download button gives its file on the first click.
"""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

import pytest

from tests.browser import choose, expect, go_to, screenshot, settle
from tests.conftest import small_dataset

pytestmark = pytest.mark.browser

DATASET = "small_five"
TIME_PARTS = r"Trained in (\d+ min )?[\d.]+ s: embedding (\d+ min )?[\d.]+ s, training (\d+ min )?[\d.]+ s"
WAIT = 300_000  # ms: loading dlib and embedding on a busy 2-core machine
# Every text a progress bar shows, as the page draws it (the fragment redraws it every second).
RECORD_PROGRESS = """() => {
    window.progressTexts = [];
    const seen = () => document.querySelectorAll('[data-testid=stProgress]').forEach(
        bar => window.progressTexts.push(bar.innerText));
    new MutationObserver(seen).observe(document.body, {subtree: true, childList: true, characterData: true});
}"""


@pytest.fixture(scope="module")
def exposed_datasets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """22 photos of three five_celebrity people: a real first training in seconds, not minutes; and a dataset listed
    before it, which a reload that forgot the choice would open on."""
    shelf = tmp_path_factory.mktemp("shelf")
    small_dataset(shelf / DATASET)
    small_dataset(shelf / "another", per_person=1)
    return shelf


def open_train(page, url: str) -> None:  # noqa: ANN001 - a Playwright page
    page.goto(f"{url}/train")
    page.get_by_role("heading", name="Train").first.wait_for(timeout=60_000)
    choose(page, "Dataset", DATASET, exact=False)
    choose(page, "Face detector", "dlib HOG")


def train(page) -> str:  # noqa: ANN001
    """Start training with the page's settings and wait for the saved run's banner; its text."""
    page.get_by_role("button", name="Start training").click()
    banner = page.get_by_test_id("stAlertContentSuccess").filter(has_text="Saved run").first
    banner.wait_for(timeout=WAIT)
    return banner.inner_text()


def both_widths(page, name: str, artifacts_dir: Path) -> None:  # noqa: ANN001
    """The whole page at 1400 px and at 800 px wide."""
    for width in (1400, 800):
        page.set_viewport_size({"width": width, "height": 1000})
        settle(page)
        screenshot(page, artifacts_dir / f"{name}_{width}.png")
    page.set_viewport_size({"width": 1400, "height": 1000})


def test_first_training_tells_its_time_and_its_report_reopens_after_a_reload(page, live_app,
                                                                             artifacts_dir: Path) -> None:
    url, _ = live_app
    open_train(page, url)
    page.get_by_text("nothing was measured on this server yet").first.wait_for(timeout=90_000)
    page.evaluate(RECORD_PROGRESS)
    banner = train(page)
    assert re.search(TIME_PARTS, banner), banner

    embedding = [re.match(r"Embedding photos (\d+)/(\d+) · (.*)", text)
                 for text in page.evaluate("window.progressTexts")]
    seen = [(int(m[1]), m[3]) for m in embedding if m]
    assert seen, "the embedding progress was drawn"
    early = [text for done, text in seen if 0 < done < 5]
    assert all("estimating" in text for text in early), early  # no pace from 1–4 photos
    assert not any(re.search(r"about \d+ (min|h) left", text) for _, text in seen), seen  # never minutes for 22 photos
    both_widths(page, "train_truth_finished", artifacts_dir)

    page.get_by_text(re.compile(r"embedding 0 new photo\(s\) × \d\.\d\d s measured here \(22 already cached\)")) \
        .first.wait_for(timeout=60_000)
    assert f"dataset={DATASET}" in page.url

    page.reload()  # a new session on the same URL: the dataset and the run come back, the report reopens
    page.get_by_role("heading", name="Runs").first.wait_for(timeout=60_000)
    picker = page.get_by_test_id("stSelectbox").filter(has_text="Dataset").filter(visible=True).first.locator("input")
    expect(picker).to_have_value(re.compile(f"^{DATASET} "), timeout=30_000)
    assert page.get_by_text("Saved run").count() == 0, "the finished job belonged to the old session"
    page.get_by_text("Show this run's report").click()
    page.get_by_text("Confusion matrix (validation)").first.wait_for(timeout=60_000)
    reopened = page.get_by_test_id("stAlertContentSuccess").filter(has_text="Saved run").first.inner_text()
    assert re.search(TIME_PARTS, reopened), reopened
    page.get_by_text("Misclassified validation photos").first.wait_for(timeout=30_000)
    page.get_by_text("Photos not used as they are").first.wait_for(timeout=30_000)
    both_widths(page, "train_truth_reopened", artifacts_dir)
    assert "Traceback" not in page.content()
    assert page.foreign_requests == []


def download_once(page, button: str, timeout: int = 120_000) -> bytes:  # noqa: ANN001
    """Click ``button`` once and return the file that arrives (the test fails when none does)."""
    settle(page)
    with page.expect_download(timeout=timeout) as download:
        page.get_by_role("button", name=button).click()
    return Path(download.value.path()).read_bytes()


def test_every_download_gives_its_file_on_the_first_click(page, live_app, artifacts_dir: Path) -> None:
    url, _ = live_app
    open_train(page, url)
    train(page)
    run = zipfile.ZipFile(io.BytesIO(download_once(page, "Download run (zip)")))
    assert any(name.endswith("/report.json") for name in run.namelist())
    exported = zipfile.ZipFile(io.BytesIO(download_once(page, "Download SavedModel (zip)", 240_000)))
    assert any(name.endswith("/saved_model.pb") for name in exported.namelist())

    go_to(page, "Predict")
    page.get_by_role("button", name="Download predictions (CSV)").wait_for(timeout=WAIT)
    assert download_once(page, "Download predictions (CSV)").startswith(b"photo")
    annotated = zipfile.ZipFile(io.BytesIO(download_once(page, "Download annotated photos (zip)")))
    assert annotated.namelist()
    both_widths(page, "predict_downloads", artifacts_dir)
    assert "Traceback" not in page.content()
