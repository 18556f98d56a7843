"""Real browser, issue 12: what the Verify page shows means what it seems.

One journey with the default detector (mtcnn) and dlib's ResNet, against a small shared dataset: a second photo
without a face (no "add the second photo", no advice to use the detector that failed), the same photo compared
with two others (the same barcode and fixed colour ranges both times), step 4 unlike step 3, a calibration that says
which metric decides and why with green/orange histograms, a probe found in the gallery, and the markers of a
4000 px photo. Screenshots at 800 and 1400 px wide go to test-artifacts/.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.browser import screenshot, settle, wait_for_charts
from tests.conftest import shared_dataset

pytestmark = pytest.mark.browser

MODEL_WAIT = 300_000  # ms: the first photo loads MTCNN (TensorFlow) and dlib on a busy 2-core machine
WIDTHS = (800, 1400)
PEOPLE = ("madonna", "elton_john", "jerry_seinfeld")
EYE = (52, 152, 219)  # core.drawing.EYE: eye and landmark markers


def photo(person: str, index: int) -> Path:
    return sorted((shared_dataset("five_celebrity_faces") / "train" / person).iterdir())[index]


@pytest.fixture(scope="module")
def exposed_datasets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Only 'mini' (four train photos each of three people) is offered, so the page picks it and calibrates fast."""
    shared = tmp_path_factory.mktemp("shared")
    for person in PEOPLE:
        folder = shared / "mini" / "train" / person
        folder.mkdir(parents=True)
        for index in range(4):
            (folder / photo(person, index).name).write_bytes(photo(person, index).read_bytes())
    return shared


def shots(page, name: str, artifacts_dir: Path) -> None:  # noqa: ANN001 - a Playwright page
    """The whole page at 800 and at 1400 px wide."""
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 1000})
        settle(page)
        screenshot(page, artifacts_dir / f"verify_truth_{name}_{width}.png")
    page.set_viewport_size({"width": 1400, "height": 1000})


def barcode(page, index: int) -> dict:  # noqa: ANN001
    """The drawn heatmap of barcode ``index`` (0, 1: the photos, 2: their difference): its first row and range."""
    return page.evaluate("""i => {
        const trace = document.querySelectorAll('[data-testid=stPlotlyChart] .js-plotly-plot')[i]._fullData[0];
        return {row: Array.from(trace.z[0]), zmin: trace.zmin, zmax: trace.zmax, type: trace.type,
                colorbar: document.querySelectorAll('[data-testid=stPlotlyChart]')[i].querySelectorAll('.colorbar').length};
    }""", index)


def compare_with(page, upload, second: Path, verdict: str) -> list[dict]:  # noqa: ANN001
    """Give ``second`` as photo 2, wait for ``verdict`` and the charts: the three barcodes drawn."""
    upload.set_input_files(str(second))
    page.get_by_text(verdict, exact=True).wait_for(timeout=MODEL_WAIT)
    wait_for_charts(page, 3)
    settle(page)
    return [barcode(page, i) for i in range(3)]


def step_image(page, photo_number: int, step: int):  # noqa: ANN001, ANN201
    """The <img> of one pipeline step, found by its caption."""
    return page.locator("[data-testid=stImage], [data-testid=stImageContainer]").filter(
        has_text=f"Photo {photo_number}: {step} ·").locator("img").first


def natural_size(image) -> tuple[int, int]:  # noqa: ANN001
    return tuple(image.evaluate("img => [img.naturalWidth, img.naturalHeight]"))


def marker_share(image) -> float:  # noqa: ANN001
    """The share of an image's pixels in the marker colour (give or take JPEG noise), counted in the browser."""
    return image.evaluate("""(img, eye) => {
        const canvas = document.createElement('canvas');
        canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
        const context = canvas.getContext('2d');
        context.drawImage(img, 0, 0);
        const pixels = context.getImageData(0, 0, canvas.width, canvas.height).data;
        let hits = 0;
        for (let k = 0; k < pixels.length; k += 4) {
            if (Math.abs(pixels[k] - eye[0]) < 40 && Math.abs(pixels[k + 1] - eye[1]) < 40
                && Math.abs(pixels[k + 2] - eye[2]) < 40) hits++;
        }
        return hits / (canvas.width * canvas.height);
    }""", list(EYE))


def test_verify_pictures_and_calibration_mean_what_they_seem(page, live_app, artifacts_dir: Path,  # noqa: ANN001
                                                             tmp_path: Path) -> None:
    url, _ = live_app
    page.goto(f"{url}/verify")
    page.get_by_role("heading", name="Verify").first.wait_for(timeout=60_000)
    uploads = page.locator("[data-testid=stFileUploader] input[type=file]")
    uploads.first.wait_for(state="attached", timeout=60_000)

    # A second photo without a face: its own warning, no "add the second photo", no advice to use mtcnn again.
    uploads.nth(0).set_input_files(str(photo("madonna", 0)))
    page.get_by_text("Add the second photo").wait_for(timeout=MODEL_WAIT)
    grey = tmp_path / "grey.png"
    Image.fromarray(np.full((200, 200, 3), 90, np.uint8)).save(grey)
    uploads.nth(1).set_input_files(str(grey))
    warning = page.get_by_text("no face found by the mtcnn detector")
    warning.wait_for(timeout=MODEL_WAIT)
    settle(page)
    assert "mtcnn finds the most faces" not in warning.inner_text()
    assert page.get_by_text("Add the second photo").count() == 0
    shots(page, "no_face", artifacts_dir)

    # The same photo against two others: the same barcode, on the same fixed ranges, with colour bars.
    with_madonna = compare_with(page, uploads.nth(1), photo("madonna", 1), "Same person")
    assert all(b["type"] == "heatmap" and b["colorbar"] == 1 for b in with_madonna)
    assert (with_madonna[0]["zmin"], with_madonna[0]["zmax"]) == (-0.35, 0.35)
    assert (with_madonna[2]["zmin"], with_madonna[2]["zmax"]) == (0, 0.2)

    # Step 4 is the network's numbers, one map per channel, not the crop of step 3 again.
    crop, network_input = natural_size(step_image(page, 1, 3)), natural_size(step_image(page, 1, 4))
    assert crop == (150, 150) and network_input[1] == 150 and network_input[0] > 3 * 150
    shots(page, "same_person", artifacts_dir)

    with_elton = compare_with(page, uploads.nth(1), photo("elton_john", 0), "Different people")
    assert with_elton[0] == with_madonna[0], "photo 1 looks the same whatever it is compared with"
    assert (with_elton[2]["zmin"], with_elton[2]["zmax"]) == (with_madonna[2]["zmin"], with_madonna[2]["zmax"])
    assert np.mean(with_elton[2]["row"]) > np.mean(with_madonna[2]["row"])  # a louder difference for strangers
    shots(page, "different_people", artifacts_dir)

    # Calibration: which metric decides and by how much, histograms in two clearly different colours.
    page.get_by_role("button", name="Calibrate on mini").click()
    page.get_by_text("This calibration decides on").wait_for(timeout=MODEL_WAIT)
    decision = page.get_by_text("This calibration decides on").inner_text()
    assert "EER" in decision and " vs " in decision
    page.get_by_text("it decides on").first.wait_for(timeout=60_000)  # the verdict's calibration line says it too
    histogram = page.locator("[data-testid=stPlotlyChart] .js-plotly-plot").filter(has_text="distances").first
    histogram.locator(".legend").first.wait_for(timeout=60_000)
    colours = histogram.evaluate("chart => chart.data.map(trace => trace.marker.color)")
    assert colours == ["#2ca02c", "#ff7f0e"]

    # The dataset is embedded now: 1:N search shows that photo 1 is itself one of its photos.
    page.get_by_text("this photo itself is in the gallery").first.wait_for(timeout=MODEL_WAIT)
    shots(page, "calibrated", artifacts_dir)

    # A 4000 px photo: markers drawn for the picture shown, not shrunk with the photo.
    big = tmp_path / "big.jpg"
    buffer = io.BytesIO()
    Image.open(photo("madonna", 1)).convert("RGB").resize((4000, 4000), Image.Resampling.BICUBIC).save(buffer, "JPEG")
    big.write_bytes(buffer.getvalue())
    uploads.nth(0).set_input_files(str(big))
    page.wait_for_function("""() => Array.from(document.querySelectorAll('[data-testid=stImage], [data-testid=stImageContainer]'))
        .some(box => box.innerText.includes('Photo 1: 1 ·') && Math.max(box.querySelector('img')?.naturalWidth ?? 0, box.querySelector('img')?.naturalHeight ?? 0) === 640)""",
                           timeout=MODEL_WAIT)  # step 1 of the big photo: its region shrunk to 640 px
    settle(page)
    share = marker_share(step_image(page, 1, 1))
    assert share > 0.0015, f"markers cover only {share:.4%} of step 1"  # drawn, then shrunk: 0.04 %
    shots(page, "big_photo", artifacts_dir)
    assert "Traceback" not in page.content()
    assert page.foreign_requests == []
