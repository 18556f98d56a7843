"""Real browser (issue 12, "Which face"): Verify marks the face it used in a photo with two faces and verifies the
subject, not the bigger bystander cut off at the edge; the Audit flags the photo. Screenshots at 800 and 1400 px."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser import MODEL_WAIT, choose, screenshot, settle
from tests.test_browser_verify import photo
from tests.two_faces import two_face_photo

pytestmark = pytest.mark.browser

DATASET = "two_faces_mini"


@pytest.fixture(scope="module")
def exposed_datasets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One small shared dataset whose train/madonna folder holds the composed two-face photo."""
    root = tmp_path_factory.mktemp("exposed")
    for person, index in (("madonna", 1), ("elton_john", 0)):
        folder = root / DATASET / "train" / person
        folder.mkdir(parents=True)
        (folder / "one.jpg").write_bytes(Path(photo(person, index)).read_bytes())
    two_face_photo(root / DATASET / "train" / "madonna")
    return root


def screenshots(page, artifacts_dir: Path, name: str) -> None:  # noqa: ANN001 - a Playwright page
    """The page at 800 and 1400 px wide."""
    for width in (800, 1400):
        page.set_viewport_size({"width": width, "height": 1000})
        settle(page)
        screenshot(page, artifacts_dir / f"{name}_{width}.png")


def test_verify_marks_the_used_face_and_compares_the_subject(page, live_app, artifacts_dir: Path,
                                                            tmp_path: Path) -> None:
    url, _ = live_app
    page.goto(f"{url}/verify")
    page.get_by_role("heading", name="Verify").first.wait_for(timeout=60_000)
    uploads = page.locator("[data-testid=stFileUploader] input[type=file]")
    uploads.nth(1).wait_for(state="attached", timeout=60_000)
    two_face_photo(tmp_path)
    uploads.nth(0).set_input_files(str(tmp_path / "two_faces.png"))
    page.get_by_text("2 faces found; face 1 (green) is the one the 'central' face choice uses").wait_for(
        timeout=MODEL_WAIT)
    uploads.nth(1).set_input_files(photo("madonna", 1))
    page.get_by_text("Same person", exact=True).wait_for(timeout=MODEL_WAIT)
    assert "Traceback" not in page.content()
    screenshots(page, artifacts_dir, "verify_face_choice")

    choose(page, "Face used in a photo with several", "largest")
    page.get_by_text("Different people", exact=True).wait_for(timeout=MODEL_WAIT)  # the bystander, compared
    assert page.foreign_requests == []


def test_the_audit_flags_a_photo_with_several_faces(page, live_app, artifacts_dir: Path) -> None:
    url, _ = live_app
    page.goto(f"{url}/dataset")
    page.get_by_role("heading", name="Dataset").first.wait_for(timeout=60_000)
    page.get_by_test_id("stSelectbox").first.click()
    page.get_by_role("option", name=DATASET, exact=False).first.click()
    choose(page, "Detector", "dlib HOG")
    page.get_by_role("button", name="Count faces").click()
    page.get_by_text("1 photo shows several faces; the central one is used.").wait_for(timeout=MODEL_WAIT)
    screenshots(page, artifacts_dir, "audit_several_faces")
    assert page.foreign_requests == []
