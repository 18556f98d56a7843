"""Real browser: two uploads on the Verify page give a verdict, the pipeline steps and the barcodes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import shared_dataset, wait_for_charts

pytestmark = pytest.mark.browser
expect = pytest.importorskip("playwright.sync_api").expect

MODEL_WAIT = 180_000  # ms: the first photo loads MTCNN (TensorFlow) and dlib on a busy 2-core machine


def photo(person: str, index: int) -> str:
    return str(sorted((shared_dataset("five_celebrity_faces") / "train" / person).iterdir())[index])


def screenshot(page, path: Path) -> None:
    """The whole page: Streamlit scrolls inside its own container, so grow the window to the content first."""
    height = page.evaluate("document.querySelector('[data-testid=stMain]').scrollHeight")
    page.set_viewport_size({"width": 1400, "height": max(1000, int(height) + 100)})
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size({"width": 1400, "height": 1000})


def test_same_person_then_different_people(page, live_app, artifacts_dir: Path) -> None:
    url, _ = live_app
    page.goto(f"{url}/verify")
    page.get_by_role("heading", name="Verify").first.wait_for(timeout=60_000)
    uploads = page.locator("[data-testid=stFileUploader] input[type=file]")
    uploads.first.wait_for(state="attached", timeout=60_000)
    uploads.nth(0).set_input_files(photo("madonna", 0))
    page.get_by_text("Add the second photo").wait_for(timeout=MODEL_WAIT)
    uploads.nth(1).set_input_files(photo("madonna", 1))
    page.get_by_text("Same person", exact=True).wait_for(timeout=MODEL_WAIT)
    wait_for_charts(page, 3)
    expect(page.locator("[data-testid=stPlotlyChart]")).to_have_count(3)
    assert page.locator("[data-testid=stImage] img, [data-testid=stImageContainer] img").count() >= 8
    assert "Traceback" not in page.content()
    screenshot(page, artifacts_dir / "verify_same_person.png")

    uploads.nth(1).set_input_files(photo("elton_john", 0))
    page.get_by_text("Different people", exact=True).wait_for(timeout=MODEL_WAIT)
    wait_for_charts(page, 3)
    assert page.get_by_text("Same person", exact=True).count() == 0
    screenshot(page, artifacts_dir / "verify_different_people.png")
    assert page.foreign_requests == []
