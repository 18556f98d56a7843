"""Real browser: the Predict page names the faces of the five_celebrity test split, filters and shows a detail."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.config import use_workspace
from tests.browser import choose, settle
from tests.conftest import PAGE_WORKSPACE, shared_dataset

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def server_with_run(live_app: tuple[str, Path]) -> str:
    """The live server's URL, after a run was saved in a workspace of its FaceLab home (trained here, in-process);
    the URL opens that workspace."""
    dataset = shared_dataset("five_celebrity_faces")
    from core.pipeline.backbones import BACKBONES
    from core.pipeline.detection import DETECTORS
    from core.pipeline.embeddings import Pipeline
    from core.services.train import train_on_dataset
    from core.training.config import TrainConfig

    url, home = live_app
    with pytest.MonkeyPatch.context() as patch, use_workspace(PAGE_WORKSPACE):
        patch.setenv("FACELAB_HOME", str(home))
        pipeline = Pipeline(DETECTORS.get("dlib-hog"), BACKBONES.get("dlib-resnet"))
        train_on_dataset(dataset, pipeline, TrainConfig(head="centroid"))
    return url


def test_predict_page_gallery_filter_and_detail(page, server_with_run: str, artifacts_dir: Path) -> None:
    page.set_viewport_size({"width": 1400, "height": 3400})  # the whole page fits: Streamlit scrolls inside
    page.goto(f"{server_with_run}/predict?workspace={PAGE_WORKSPACE}")
    page.get_by_role("heading", name="Predict").first.wait_for(timeout=60_000)
    page.get_by_text("24 of 24 photo(s)").wait_for(timeout=120_000)
    settle(page)
    assert page.locator("[data-testid=stImage] img, [data-testid=stImageContainer] img").count() >= 12
    assert page.get_by_text("Summary: the test split of five_celebrity_faces").count() == 1
    assert page.get_by_text("elton_john", exact=False).count() >= 1  # captions of the first gallery page
    page.screenshot(path=str(artifacts_dir / "predict_gallery.png"))

    assert page.get_by_text("Accuracy of 23 photo(s) with a face of the run's people; 1 without a face").count() == 1
    choose(page, "Show", "Incorrect")
    page.get_by_text("0 of 24 photo(s)").wait_for(timeout=30_000)  # the photo without a face is not judged
    choose(page, "Show", "No face found")
    page.get_by_text("1 of 24 photo(s)").wait_for(timeout=30_000)  # the ben_afflek photo HOG finds no face in
    assert page.get_by_text("no face found", exact=False).count() >= 1
    settle(page)
    page.screenshot(path=str(artifacts_dir / "predict_no_face.png"))

    choose(page, "Show", "All photos")
    page.get_by_text("24 of 24 photo(s)").wait_for(timeout=30_000)
    settle(page)
    page.get_by_role("button", name="Details").nth(5).click()
    page.get_by_text("Nearest training photos of elton_john").first.wait_for(timeout=30_000)
    settle(page)
    page.screenshot(path=str(artifacts_dir / "predict_detail.png"))
    assert "Traceback" not in page.content()
    assert page.foreign_requests == []


def test_predicting_strangers_says_they_were_correctly_rejected(page, server_with_run: str, live_app: tuple[str, Path],
                                                                artifacts_dir: Path) -> None:
    """A test split of people the run never saw: the page reports rejections, not "Accuracy 0.0 %" and "wrong"."""
    from core.config import datasets_dir

    with pytest.MonkeyPatch.context() as patch, use_workspace(PAGE_WORKSPACE):
        patch.setenv("FACELAB_HOME", str(live_app[1]))
        root = datasets_dir() / "strangers"
    for person in sorted((shared_dataset("glint360k_celebrity_sample") / "test").iterdir())[:4]:
        (root / "test" / person.name).mkdir(parents=True, exist_ok=True)
        for photo in sorted(person.iterdir())[:2]:
            (root / "test" / person.name / photo.name).write_bytes(photo.read_bytes())
    page.set_viewport_size({"width": 1400, "height": 3400})
    page.goto(f"{server_with_run}/predict?workspace={PAGE_WORKSPACE}")
    page.get_by_text("24 of 24 photo(s)").wait_for(timeout=120_000)
    settle(page)
    page.get_by_text("Test split of another dataset").click()
    page.get_by_text("8 of 8 photo(s)").wait_for(timeout=120_000)  # the only workspace dataset is chosen first
    settle(page)
    text = page.inner_text("body")
    assert "Strangers rejected" in text and "Rejection rate" in text
    assert text.count("correctly rejected") >= 6, "most of the eight strangers are rejected, and said so"
    assert "wrong, is" not in text
    assert page.get_by_test_id("stMetric").filter(has_text="Accuracy").inner_text().split() == ["Accuracy", "—"]
    assert "unknown (closest: " in text
    page.screenshot(path=str(artifacts_dir / "predict_strangers_1400.png"))
    page.set_viewport_size({"width": 800, "height": 4200})
    settle(page)
    page.screenshot(path=str(artifacts_dir / "predict_strangers_800.png"))
    assert "Traceback" not in page.content()
    assert page.foreign_requests == []
