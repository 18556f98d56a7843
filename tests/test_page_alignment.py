"""Issue 12 on the pages: the "Align faces" switch says it only rotates, and the Verify page's rotation step says
what was done when it is off (AppTest; dlib HOG + dlib ResNet, no TensorFlow)."""

from __future__ import annotations

import pytest

from tests.conftest import open_page, shared_dataset

pytestmark = pytest.mark.usefixtures("workspace")  # the test thread works where the app opened by open_page does


@pytest.mark.parametrize("page, key", [("pages/verify.py", "vf_align"), ("pages/train.py", "tr_align")])
def test_the_align_switch_says_it_only_rotates(page: str, key: str) -> None:
    switch = open_page(page).toggle(key=key)
    assert switch.label == "Align faces (rotate to level the eyes)" and switch.value is True
    assert "cut exactly as when on (same centre, same size), only not rotated" in switch.help


def test_verify_step_says_rotation_off_keeps_the_crop() -> None:
    folder = shared_dataset("five_celebrity_faces") / "train" / "madonna"
    photos = sorted(folder.iterdir())[:2]
    at = open_page("pages/verify.py")
    at.selectbox(key="vf_detector").select("dlib-hog")
    at.toggle(key="vf_align").set_value(False)
    at.run()
    for n, path in enumerate(photos):
        at.get("file_uploader")[n].upload(path.name, path.read_bytes(), "image/jpeg")
        at.run()
    assert not at.exception
    captions = [image.caption for element in at.get("image") for image in element.proto.imgs]
    assert "Photo 1: 2 · rotation off: same crop, not rotated" in captions
    assert "Photo 2: 2 · rotation off: same crop, not rotated" in captions
