"""Real browser, the whole journey from an empty FaceLab home: build a dataset from uploads → audit it →
train on it → name its test photos → verify two photos. One user, one session, every step through the UI.

The helpers it drives the page with (``choose``, ``settle``, ``screenshot``…) are every browser test's, in
tests/browser.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.browser import (
    CHARTS,
    MODEL_WAIT,
    PHOTOS,
    choose,
    expect,
    go_to,
    metric,
    screenshot,
    settle,
    type_into,
    wait_for_charts,
    workspace_of,
)
from tests.conftest import shared_dataset

pytestmark = pytest.mark.browser
PEOPLE = ("ben_afflek", "elton_john", "madonna")
PER_PERSON = 10  # photos uploaded of each: every step has photos to show (7 train, 2 validation, 1 test each)
SPLIT_RATIOS = (0.70, 0.15, 0.15)  # the Builder's default sliders: validation 15 %, test 15 %
DATASET = "journey"


def person_photos(person: str) -> list[Path]:
    """The first PER_PERSON photos of ``person`` in five_celebrity_faces, by path (its test photos, then train ones)."""
    root = shared_dataset("five_celebrity_faces")
    return sorted(p for split in ("train", "validation", "test") for p in (root / split / person).iterdir())[:PER_PERSON]


def build_dataset(page, people: dict[str, list[Path]]) -> None:  # noqa: ANN001
    """Builder tab: create the dataset, add each person and upload their photos, then split."""
    page.get_by_role("tab", name="Builder").click()
    type_into(page, "New dataset name", DATASET)
    page.get_by_role("button", name="Create dataset").click()
    page.get_by_text(f"Created '{DATASET}'.").wait_for(timeout=30_000)
    for person, photos in people.items():
        settle(page)
        type_into(page, "Person's name", person)
        page.get_by_role("button", name="Add person").click()
        page.get_by_text(f"Added {person}.", exact=True).wait_for(timeout=30_000)
        settle(page)
        page.get_by_text(f"{person}: 0 photo(s)").wait_for(timeout=30_000)  # the person just added is selected
        settle(page)
        uploader = page.get_by_test_id("stFileUploader").filter(has_text="Photos").filter(visible=True)
        uploader.locator("input[type=file]").set_input_files([str(p) for p in photos])
        page.get_by_role("button", name=f"Add {len(photos)} photo(s) to {person}").click(timeout=60_000)
        page.get_by_text(f"Added {len(photos)} photo(s) to {person}.").wait_for(timeout=60_000)
    settle(page)
    page.get_by_role("button", name="Split", exact=True).click()
    page.get_by_text(f"Split {sum(map(len, people.values()))} photos.").wait_for(timeout=60_000)
    # The tabs are session state: the reruns of building a dataset never send the user back to Audit.
    expect(page.get_by_role("tab", name="Builder")).to_have_attribute("aria-selected", "true")


def test_build_audit_train_predict_verify(page, live_app, artifacts_dir: Path) -> None:
    from core.data.builder import split_counts

    url, home = live_app
    people = {person: person_photos(person) for person in PEOPLE}
    expected = [sum(split_counts(len(photos), SPLIT_RATIOS)[i] for photos in people.values()) for i in range(3)]
    test_n = expected[2]
    page.set_viewport_size({"width": 1400, "height": 1400})

    # 1 · Builder: a dataset made of uploaded photos, split into train / validation / test.
    page.goto(f"{url}/dataset")
    page.get_by_role("heading", name="Dataset").first.wait_for(timeout=60_000)
    build_dataset(page, people)
    datasets = home / "workspaces" / workspace_of(page) / "datasets"  # the session's own workspace
    for split, n in zip(("train", "validation", "test"), expected):  # really on disk, in the fresh home
        assert sum(1 for _ in (datasets / DATASET / split).glob("*/*")) == n
    settle(page)
    screenshot(page, artifacts_dir / "journey_1_builder.png")

    # 2 · Audit: the new dataset's counts and charts.
    page.get_by_role("tab", name="Audit").click()
    choose(page, "Dataset", DATASET)
    expect(metric(page, "People")).to_have_text(str(len(PEOPLE)), timeout=60_000)
    for label, n in zip(("Train", "Validation", "Test"), expected):
        expect(metric(page, label)).to_have_text(str(n))
    page.locator(CHARTS).filter(visible=True).first.wait_for(timeout=60_000)
    settle(page)  # the audit draws its parts one after another: the people's names may come after the first chart
    expect(page.get_by_text("madonna").filter(visible=True).first).to_be_visible()
    screenshot(page, artifacts_dir / "journey_2_audit.png")

    # 3 · Train: dlib HOG + dlib ResNet, a softmax head, up to 200 short epochs; the curves are drawn.
    go_to(page, "Train")
    choose(page, "Dataset", DATASET)
    choose(page, "Face detector", "dlib HOG")
    page.get_by_text(f"embedding {sum(expected)} new photo(s)").first.wait_for(timeout=MODEL_WAIT)
    type_into(page, "Epochs (at most)", "200")  # one batch an epoch: 21 photos
    page.get_by_text("up to 200 head epochs").first.wait_for(timeout=30_000)
    page.get_by_role("button", name="Start training").click()
    page.get_by_text("Saved run").first.wait_for(timeout=MODEL_WAIT)
    wait_for_charts(page, 3)  # loss, accuracy, confusion matrix
    assert page.get_by_text("Validation accuracy", exact=True).count() == 1
    expect(metric(page, "Validation accuracy")).to_have_text(re.compile(r"\d+(\.\d)?%"))
    expect(metric(page, "People")).to_have_text(str(len(PEOPLE)))
    settle(page)
    screenshot(page, artifacts_dir / "journey_3_train.png")

    # 4 · Predict: the new run names the photos of the dataset's test split.
    go_to(page, "Predict")
    page.get_by_text(f"{test_n} of {test_n} photo(s)").wait_for(timeout=MODEL_WAIT)
    assert page.get_by_text(f"Summary: the test split of {DATASET}").count() == 1
    settle(page)
    assert page.locator(PHOTOS).count() >= test_n
    captions = page.get_by_test_id("stCaptionContainer").all_inner_texts()
    named = [text for text in captions if any(person in text for person in PEOPLE)]
    assert len(named) >= test_n - 1, captions  # at most one photo without a detected face
    screenshot(page, artifacts_dir / "journey_4_predict.png")

    # 5 · Verify: two uploaded photos of one person; the verdict, the steps and the barcodes.
    go_to(page, "Verify")
    uploads = page.locator("[data-testid=stFileUploader] input[type=file]")
    uploads.first.wait_for(state="attached", timeout=MODEL_WAIT)
    madonna = [p for p in people["madonna"] if "/train/" in p.as_posix()]
    uploads.nth(0).set_input_files(str(madonna[0]))
    page.get_by_text("Add the second photo").wait_for(timeout=MODEL_WAIT)
    uploads.nth(1).set_input_files(str(madonna[1]))
    page.get_by_text("Same person", exact=True).wait_for(timeout=MODEL_WAIT)
    wait_for_charts(page, 3)
    assert page.get_by_role("heading", name="Embeddings as barcodes").count() == 1
    expect(page.locator("[data-testid=stPlotlyChart]")).to_have_count(3)
    settle(page)
    screenshot(page, artifacts_dir / "journey_5_verify.png")

    assert "Traceback" not in page.content()
    assert page.foreign_requests == []
