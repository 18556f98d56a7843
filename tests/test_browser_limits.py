"""Real browser: the Verify page refuses a photo above the pixel limit, and says how many faces a crowded photo lost
to the face cap, on a server started with FACELAB_MAX_FACES=3."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.browser import MODEL_WAIT, screenshot
from tests.conftest import shared_dataset
from tests.test_browser_verify import photo

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module", autouse=True)
def face_cap() -> Iterator[None]:
    """Set before the module's server starts (the live_app fixture passes the environment on)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FACELAB_MAX_FACES", "3")
        yield


def crowded_photo(folder: Path) -> Path:
    """One face four times (2×2), blown up to a 20-megapixel JPEG."""
    face = np.asarray(Image.open(photo("madonna", 0)).convert("RGB"))
    tile = Image.fromarray(np.concatenate([np.concatenate([face, face], axis=1)] * 2, axis=0))
    path = folder / "crowd.jpg"
    tile.resize((tile.width * 12, tile.height * 12), Image.Resampling.BILINEAR).save(path, quality=85)
    return path


def test_a_bomb_is_refused_and_a_crowd_is_capped(page, live_app, artifacts_dir: Path, tmp_path: Path) -> None:
    shared_dataset("five_celebrity_faces")
    assert os.environ["FACELAB_MAX_FACES"] == "3"
    bomb = tmp_path / "huge.png"
    Image.new("1", (7745, 7745)).save(bomb)  # 60 megapixels in a few kilobytes
    url, _ = live_app
    page.goto(f"{url}/verify")
    uploads = page.locator("[data-testid=stFileUploader] input[type=file]")
    uploads.nth(1).wait_for(state="attached", timeout=60_000)
    uploads.nth(0).set_input_files(str(bomb))
    page.get_by_text("image is 7745×7745 pixels, above the limit of 24 megapixels").wait_for(timeout=MODEL_WAIT)
    screenshot(page, artifacts_dir / "verify_pixel_limit.png")

    uploads.nth(0).set_input_files(str(crowded_photo(tmp_path)))
    page.get_by_text("4 faces found, the 3 largest were used; face 1 (green)").wait_for(timeout=MODEL_WAIT)
    uploads.nth(1).set_input_files(photo("madonna", 1))
    page.get_by_text("Same person", exact=True).wait_for(timeout=MODEL_WAIT)
    page.locator("[data-testid=stPlotlyChart] .main-svg").nth(2).wait_for(timeout=60_000)
    assert page.get_by_text("cannot be used").count() == 0 and "Traceback" not in page.content()
    screenshot(page, artifacts_dir / "verify_crowd_capped.png")
    assert page.foreign_requests == []
