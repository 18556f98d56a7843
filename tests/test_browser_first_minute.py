"""Real browser: the first minute on FaceLab tells the truth (issue 12).

Home's two ways in are buttons; the Audit's Problems metric and list agree; the Builder selects the person just
added and empties the boxes it used; a flat zip is named after its file and split; the VGG-Face notice is worded
for browser users. Screenshots of Home and the Dataset page at 800 and 1400 px wide go to ``artifacts_dir``.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from tests.browser import metric, screenshot, selected, settle, type_into
from tests.conftest import image_bytes, noise_image

pytestmark = pytest.mark.browser
WIDTHS = (800, 1400)


@pytest.fixture(scope="module")
def exposed_datasets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Overrides conftest's: one small dataset whose only finding is a note (it has no test/ folder)."""
    root = tmp_path_factory.mktemp("exposed")
    for seed, (split, person, i) in enumerate((s, p, i) for s, n in (("train", 2), ("validation", 1))
                                               for p in ("amy", "bob") for i in range(n)):
        (root / "notes_only" / split / person).mkdir(parents=True, exist_ok=True)
        (root / "notes_only" / split / person / f"{i}.png").write_bytes(image_bytes(noise_image(40, 40, seed=seed)))
    return root


def open_dataset_page(page, url: str) -> None:  # noqa: ANN001 - a Playwright page
    page.goto(f"{url}/dataset")
    page.get_by_role("heading", name="Dataset").first.wait_for(timeout=60_000)
    settle(page)


def shots(page, artifacts_dir: Path, name: str) -> None:  # noqa: ANN001
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 1000})
        screenshot(page, artifacts_dir / f"{name}_{width}.png")


def test_home_starts_are_buttons_and_train_is_described_truthfully(page, live_app, artifacts_dir: Path) -> None:
    url, _ = live_app
    page.goto(url)
    start = page.get_by_role("button", name="Start with a dataset")
    start.wait_for(timeout=60_000)
    settle(page)
    assert page.get_by_role("button", name="Compare two photos").get_attribute("data-testid") == "stBaseButton-primary"
    assert "VGGFace16" not in page.content() and page.get_by_text("classifier head on face embeddings").count() == 1
    shots(page, artifacts_dir, "first_minute_home")
    start.click()
    page.get_by_role("heading", name="Dataset").first.wait_for(timeout=60_000)
    assert page.foreign_requests == []


def test_audit_problems_metric_matches_the_list(page, live_app, artifacts_dir: Path) -> None:
    url, _ = live_app
    open_dataset_page(page, url)
    page.get_by_test_id("stSelectbox").filter(has_text="Dataset").filter(visible=True).first.click()
    page.get_by_role("option", name="notes_only", exact=False).click()
    page.get_by_text("Problems (0)", exact=True).wait_for(timeout=60_000)
    settle(page)
    assert metric(page, "Problems").inner_text() == "0"
    assert page.get_by_text("Notes (1): worth knowing, nothing to fix").count() == 1
    shots(page, artifacts_dir, "first_minute_audit")


def test_builder_selects_the_new_person_and_empties_the_name_box(page, live_app, artifacts_dir: Path) -> None:
    url, _ = live_app
    open_dataset_page(page, url)
    page.get_by_role("tab", name="Builder").click()
    type_into(page, "New dataset name", "tennis")
    page.get_by_role("button", name="Create dataset").click()
    page.get_by_text("Created 'tennis'.").wait_for(timeout=30_000)
    for person in ("Roger Federer", "Serena Williams"):
        settle(page)
        type_into(page, "Person's name", person)
        page.get_by_role("button", name="Add person").click()
        page.get_by_text(f"Added {person}.", exact=True).wait_for(timeout=30_000)
    settle(page)
    assert selected(page, "Person") == "Serena Williams"
    assert page.get_by_role("button", name="Add 0 photo(s) to Serena Williams").count() == 1
    assert page.get_by_label("Person's name", exact=True).filter(visible=True).first.input_value() == ""
    assert page.get_by_label("New dataset name", exact=True).filter(visible=True).first.input_value() == ""
    shots(page, artifacts_dir, "first_minute_builder")


def test_flat_zip_is_named_after_its_file_and_split(page, live_app, artifacts_dir: Path, tmp_path: Path) -> None:
    url, _ = live_app
    upload = tmp_path / "Class photos (1).zip"
    with zipfile.ZipFile(upload, "w") as archive:
        for seed, (person, i) in enumerate((p, i) for p in ("ann", "ben", "cat", "dan") for i in range(10)):
            archive.writestr(f"{person}/{i}.png", image_bytes(noise_image(32, 32, seed=100 + seed)))
    open_dataset_page(page, url)
    page.get_by_role("tab", name="Import a zip").click()
    page.get_by_test_id("stFileUploader").filter(visible=True).first.locator("input[type=file]") \
        .set_input_files(str(upload))
    name_box = page.get_by_label("Dataset name", exact=True).filter(visible=True).first
    page.wait_for_function("() => [...document.querySelectorAll('input')].some(i => i.value === 'Class photos 1')",
                           timeout=30_000)
    assert name_box.input_value() == "Class photos 1"
    settle(page)
    page.get_by_role("button", name="Import", exact=True).click()
    page.get_by_text("Flat zip (no train/validation/test folders): 40 photos of 4 people split 70/15/15",
                     exact=False).wait_for(timeout=60_000)
    shots(page, artifacts_dir, "first_minute_import")


def test_train_page_notice_has_no_command_or_server_path(page, live_app, artifacts_dir: Path) -> None:
    from core.pipeline.backbones import BACKBONES

    if BACKBONES.entry("vggface16").available() is None:
        pytest.skip("VGG-Face weights are installed here: no notice to read")
    url, home = live_app
    page.goto(f"{url}/train")
    page.get_by_text("VGG-Face weights not found on this server", exact=False).first.wait_for(timeout=120_000)
    settle(page)
    text = page.inner_text("body")
    assert [m for m in ("python -m core", str(home), str(Path.home()) + "/") if m in text] == []
    screenshot(page, artifacts_dir / "first_minute_train_1400.png")
