"""Real browser: hostile names render as text on the Dataset, Train, Predict and Verify pages.

A listener on a loopback port stands for an outside host. The exposed dataset, its people and its photos are
named with Markdown images and links (and an HTML link, which plotly would draw) pointing at it; a dataset
name typed in the Builder and the run name point at it with full URLs. Chromium renders every page of one
session: nothing may connect to the listener, no link or image may point at it, and the names show literally.
"""

from __future__ import annotations

import socketserver
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser import CHARTS, PHOTOS, go_to, screenshot, selected, settle, type_into
from tests.conftest import image_bytes, noise_image
from tests.test_page_names import dataset_name, person_names, photo_name, write_hostile_dataset

pytestmark = pytest.mark.browser
IMAGE = image_bytes(noise_image(4, 4))

POINTING_AT = """port => [...document.querySelectorAll('a, img, image, [src], [href]')]
    .flatMap(e => [e.getAttribute('href'), e.getAttribute('src'), e.getAttribute('xlink:href'), e.src, e.href])
    .filter(v => typeof v === 'string' && v.includes('127.0.0.1:' + port))"""


class Listener(socketserver.ThreadingTCPServer):
    """Records every connection made to it, and answers each with a small image (so a page that loaded one
    settles, and the test fails on the connection, not on a timeout)."""

    daemon_threads = True

    def __init__(self) -> None:
        self.connections: list[tuple[str, int]] = []
        super().__init__(("127.0.0.1", 0), Record)

    @property
    def port(self) -> int:
        return self.server_address[1]


class Record(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        self.server.connections.append(self.client_address)  # type: ignore[attr-defined]
        self.rfile.readline()
        self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                         % len(IMAGE) + IMAGE)


@pytest.fixture(scope="module")
def listener() -> Iterator[Listener]:
    server = Listener()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def exposed_datasets(listener: Listener, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Overrides conftest's: the server offers the hostile dataset (``http:host`` needs no slash, so it fits a
    folder name; the browser resolves it against the page, still to a URL that names the listener's port)."""
    return write_hostile_dataset(tmp_path_factory.mktemp("hostile"), target(listener)).parent


def target(listener: Listener) -> str:
    return f"http:127.0.0.1:{listener.port}"


def visible_text(page) -> str:  # noqa: ANN001 - a Playwright page
    """The page's text as a reader sees it (without the invisible word joiners that break bare links)."""
    return page.inner_text("body").replace("\u2060", "")


def assert_inert(page, listener: Listener, *literal: str) -> None:  # noqa: ANN001
    """Nothing connected to the listener, nothing on the page points at it, and ``literal`` is shown as typed."""
    settle(page, images=False)  # an image a hostile name made might never load
    page.wait_for_timeout(1000)  # an image a name had made would have been requested by now
    assert listener.connections == []
    assert page.evaluate(POINTING_AT, listener.port) == []
    text = visible_text(page)
    for name in literal:
        assert name in text, name
    assert "Traceback" not in text


def pick(page, label: str, option: str) -> None:  # noqa: ANN001
    """Open the visible select box called ``label`` once the page has settled, and click the option containing
    ``option``."""
    settle(page, timeout=180_000, images=False)
    page.get_by_test_id("stSelectbox").filter(has_text=label).filter(visible=True).first.click()
    page.get_by_role("option", name=option).first.click()


def test_hostile_names_render_as_text_everywhere(page, live_app, listener: Listener, artifacts_dir: Path) -> None:
    url, _ = live_app
    hostile = target(listener)
    dataset, people = dataset_name(hostile), person_names(hostile)
    full = f"http://127.0.0.1:{listener.port}"
    typed, run = f"![x]({full}/x.png)", f"![x]({full}/)[Log in]({full}/)"  # a run name has at most 64 characters
    page.set_viewport_size({"width": 1400, "height": 1400})

    # Dataset: the audit of the hostile dataset (charts, gallery captions), then a hostile name typed in.
    page.goto(f"{url}/dataset")
    page.get_by_role("heading", name="Dataset").first.wait_for(timeout=60_000)
    pick(page, "Dataset", dataset)
    page.locator(CHARTS).first.wait_for(timeout=60_000)
    page.locator(PHOTOS).first.wait_for(timeout=60_000)
    assert selected(page, "Dataset").startswith(dataset)  # select-box options are plain text
    assert_inert(page, listener, *(photo_name(hostile, "madonna", "train", i) for i in (0, 1)))
    screenshot(page, artifacts_dir / "names_1_audit.png")
    page.get_by_role("tab", name="Builder").click()
    type_into(page, "New dataset name", typed)
    page.get_by_role("button", name="Create dataset").click()
    page.get_by_text("Could not create the dataset").wait_for(timeout=30_000)
    assert_inert(page, listener, typed)
    screenshot(page, artifacts_dir / "names_2_builder.png")

    # Train: a nearest-centroid run with a hostile name on the hostile dataset; its results and the runs table.
    go_to(page, "Train")
    pick(page, "Dataset", dataset)
    pick(page, "Face detector", "dlib HOG")
    pick(page, "Head", "Nearest centroid")
    type_into(page, "Run name (optional)", run)
    page.get_by_text("embedding 14 new photo(s)").first.wait_for(timeout=180_000)
    page.get_by_role("button", name="Start training").click()
    page.get_by_text("Saved run").first.wait_for(timeout=180_000)
    page.locator(CHARTS).first.wait_for(timeout=60_000)  # the confusion matrix, people as tick labels
    assert_inert(page, listener, f"Saved run {run}")
    screenshot(page, artifacts_dir / "names_3_train.png")

    # Predict: the run names the faces of the dataset's test split.
    go_to(page, "Predict")
    page.get_by_text("4 of 4 photo(s)").wait_for(timeout=180_000)
    assert_inert(page, listener, f"Summary: the test split of {dataset}", *people.values())
    screenshot(page, artifacts_dir / "names_4_predict.png")

    # Verify: two photos from the dataset, then 1:N search and the embedding map.
    go_to(page, "Verify")
    photo_source = page.get_by_test_id("stRadio").filter(has_text="Photo 1 from")
    photo_source.wait_for(timeout=300_000)  # the default detector (MTCNN) loads TensorFlow first
    pick(page, "Detector", "dlib HOG")
    page.get_by_text("dlib's classic HOG detector").wait_for(timeout=60_000)
    photo_source.wait_for(timeout=60_000)
    assert selected(page, "Dataset for calibration").startswith(dataset)  # the only dataset, chosen already
    for n in (1, 2):
        page.get_by_test_id("stRadio").filter(has_text=f"Photo {n} from").get_by_text("From the dataset").click()
        settle(page, timeout=180_000, images=False)
    page.get_by_text("Different people").first.wait_for(timeout=180_000)
    page.get_by_role("button", name=f"Search {dataset} and map its embeddings").click()
    page.get_by_text("Who is this?").wait_for(timeout=180_000)
    page.locator(CHARTS).last.wait_for(timeout=60_000)
    assert_inert(page, listener, f"Calibrate on {dataset}", *people.values())
    screenshot(page, artifacts_dir / "names_5_verify.png")
    assert page.foreign_requests == []
