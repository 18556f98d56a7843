"""Real browser: two uploads on the Verify page give a verdict, the pipeline steps and the barcodes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser import MODEL_WAIT, expect, screenshot, wait_for_charts
from tests.conftest import shared_dataset

pytestmark = pytest.mark.browser

def photo(person: str, index: int) -> str:
    return str(sorted((shared_dataset("five_celebrity_faces") / "train" / person).iterdir())[index])


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
