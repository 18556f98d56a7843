"""Real browser: train on three five_celebrity people, watch the curves, read the results, download the SavedModel.

22 photos, not the whole 117 of five_celebrity_faces: the page's flow is the same, and the fine-tuning and the
photos' embedding cost the suite seconds instead of minutes (the whole dataset trains in test_browser_many_users.py).
"""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

import pytest

from tests.browser import CHARTS, choose, screenshot
from tests.conftest import small_dataset

pytestmark = pytest.mark.browser
DATASET = "three_celebrities"


@pytest.fixture(scope="module")
def exposed_datasets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The only dataset the server offers: 9 train, 10 validation and 3 test photos of three people."""
    shelf = tmp_path_factory.mktemp("shelf")
    small_dataset(shelf / DATASET)
    return shelf


def open_three_celebrities(page, live_app) -> None:
    """The Train page on the three people with dlib's HOG detector (fast on a CPU)."""
    url, _ = live_app
    page.goto(f"{url}/train")
    page.get_by_role("heading", name="Train").first.wait_for(timeout=60_000)
    choose(page, "Dataset", DATASET, exact=False)
    choose(page, "Face detector", "dlib HOG")


def results_and_savedmodel(page, path: Path) -> None:
    """No traceback, a screenshot of the whole results, and the run's SavedModel downloads as a zip with a graph."""
    assert "Traceback" not in page.content()
    screenshot(page, path)
    with page.expect_download(timeout=180_000) as download:
        page.get_by_role("button", name="Download SavedModel (zip)").click()
    with zipfile.ZipFile(io.BytesIO(Path(download.value.path()).read_bytes())) as archive:
        assert any(name.endswith("/saved_model.pb") for name in archive.namelist())
    assert page.foreign_requests == []


def test_train_page_trains_and_shows_results(page, live_app, artifacts_dir: Path) -> None:
    open_three_celebrities(page, live_app)
    page.get_by_text("embedding 22 new photo(s) × ~0.25 s").first.wait_for(timeout=90_000)  # dlib HOG
    assert page.get_by_text("VGG-Face (VGG16) is unavailable").count() >= 1
    # 5,000 epochs (the most the page allows) of nine one-photo batches: the Stop below must land while training
    # still runs, also when a quiet machine trains the head fast (2,000 epochs of 77 photos once finished first).
    for label, value in (("Epochs (at most)", "5000"), ("Batch size", "1"), ("Early-stopping patience", "0")):
        field = page.get_by_role("spinbutton", name=label)
        field.fill(value)
        field.press("Enter")
    page.get_by_text("up to 5000 head epochs").first.wait_for(timeout=30_000)
    page.set_viewport_size({"width": 1400, "height": 2600})  # Streamlit scrolls inside the page: show it all
    page.screenshot(path=str(artifacts_dir / "train_settings.png"))

    page.get_by_role("button", name="Start training").click()
    stop = page.get_by_role("button", name="Stop", exact=True)
    stop.wait_for(timeout=30_000)
    page.locator(CHARTS).nth(1).wait_for(timeout=180_000)  # live loss and accuracy curves
    page.get_by_text(re.compile(r"Epoch ([5-9]|\d\d+)/5000")).first.wait_for(timeout=120_000)
    page.wait_for_timeout(2500)
    page.screenshot(path=str(artifacts_dir / "train_live.png"))
    stop.click()

    page.get_by_text("Saved run").first.wait_for(timeout=120_000)
    page.get_by_text("stopped by you").first.wait_for(timeout=30_000)  # the summary may draw after its heading
    assert page.get_by_text("stopped by you").count() == 1
    page.get_by_text("Confusion matrix (validation)").first.wait_for(timeout=30_000)
    page.get_by_text("Misclassified validation photos").first.wait_for(timeout=30_000)
    page.get_by_text("Validation accuracy", exact=True).first.wait_for(timeout=30_000)
    assert page.locator(CHARTS).count() >= 3
    results_and_savedmodel(page, artifacts_dir / "train_results.png")


def test_train_page_fine_tunes_dlib_resnet_offline(page, live_app, artifacts_dir: Path) -> None:
    """The headline mode is no longer greyed out without VGG-Face: dlib's ResNet fine-tunes end to end, offline."""
    open_three_celebrities(page, live_app)
    mode = page.get_by_role("radio", name="Fine-tune the face model end to end (slow)")
    assert mode.is_enabled()
    mode.check(force=True)  # Streamlit hides the input under its own radio drawing
    page.get_by_text("Layer groups to unfreeze").first.wait_for(timeout=30_000)
    for label, value in (("Epochs (at most)", "3"), ("Warm-up epochs", "1")):
        field = page.get_by_role("spinbutton", name=label)
        field.fill(value)
        field.press("Enter")
    page.get_by_text(re.compile(r"3 fine-tuning epoch\(s\) of \d+ crops")).first.wait_for(timeout=60_000)
    page.set_viewport_size({"width": 1400, "height": 2600})
    page.screenshot(path=str(artifacts_dir / "train_finetune_settings.png"))

    page.get_by_role("button", name="Start training").click()
    page.get_by_text("Saved run").first.wait_for(timeout=400_000)
    assert page.get_by_text(re.compile(r"fine-tuned dlib-resnet")).count() >= 1
    page.get_by_text("Test accuracy", exact=True).first.wait_for(timeout=30_000)
    results_and_savedmodel(page, artifacts_dir / "train_finetune_results.png")
