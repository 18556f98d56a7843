"""Real browser on a server whose FaceLab home became read-only: every page says so, an import says why it failed.

The home is a tmpfs mounted over the live server's home and remounted read-only (skipped where the tests may
not mount); the pages still draw the shared datasets, and nothing shows a stack trace or a server path.
"""

from __future__ import annotations

import io
import os
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser import MODEL_WAIT, expect, screenshot, settle
from tests.conftest import image_bytes, noise_image

pytestmark = pytest.mark.browser

BANNER = "Nothing can be saved now: FaceLab's home folder is read-only; ask the server's owner."


@pytest.fixture(scope="module")
def read_only_home(live_app: tuple[str, Path]) -> Iterator[tuple[str, Path]]:
    url, home = live_app
    mount = ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(home)]
    if os.geteuid() != 0 or subprocess.run(mount, capture_output=True, timeout=30).returncode != 0:
        pytest.skip("this machine does not let the tests mount a read-only file system")
    try:
        subprocess.run(["mount", "-o", "remount,ro", str(home)], check=True, timeout=30)
        yield url, home
    finally:
        subprocess.run(["umount", "-l", str(home)], timeout=30)


def test_read_only_home_is_said_on_every_page(page, read_only_home: tuple[str, Path], artifacts_dir: Path,
                                              tmp_path: Path) -> None:
    url, home = read_only_home
    page.goto(f"{url}/dataset")
    page.get_by_role("heading", name="Dataset").first.wait_for(timeout=60_000)
    expect(page.get_by_text(BANNER)).to_be_visible(timeout=30_000)

    upload = tmp_path / "faces.zip"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for i in range(3):
            archive.writestr(f"train/amy/{i}.png", image_bytes(noise_image(seed=i)))
    upload.write_bytes(buffer.getvalue())
    page.get_by_role("tab", name="Import a zip").click()
    uploader = page.get_by_test_id("stFileUploader").filter(has_text="Zip file").filter(visible=True)
    uploader.locator("input[type=file]").set_input_files(str(upload))
    settle(page)
    page.get_by_role("button", name="Import", exact=True).click()
    expect(page.get_by_text("Import refused: FaceLab's home folder is read-only; ask the server's owner.")) \
        .to_be_visible(timeout=30_000)
    settle(page)
    screenshot(page, artifacts_dir / "read_only_home_import.png")
    assert str(home) not in page.content() and "Traceback" not in page.content()

    for name, heading, ready in (("train", "Train", "Start training"), ("verify", "Verify", "Calibration")):
        page.get_by_test_id("stSidebarNav").get_by_role("link", name=heading).click()
        page.get_by_text(ready, exact=True).first.wait_for(timeout=MODEL_WAIT)  # the page drawn, models loaded
        expect(page.get_by_text(BANNER)).to_be_visible(timeout=30_000)
        settle(page, timeout=120_000)
        screenshot(page, artifacts_dir / f"read_only_home_{name}.png")
        assert "Traceback" not in page.content() and "Errno" not in page.content()
    assert not list(home.iterdir())  # nothing could be written, and nothing was
    assert page.foreign_requests == []
