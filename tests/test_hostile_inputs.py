"""The catalogue of hostile and broken input, fed through the pages a browser user can reach.

Each item must give a clear message, write nothing half-way, and leave the app serving.
(The same inputs are covered at the library level in test_images.py and test_importer.py.)
"""

from __future__ import annotations

import io
import stat
import zipfile

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from core.config import datasets_dir
from core.data import builder
from tests.conftest import displayed, image_bytes, noise_image, open_page

pytestmark = pytest.mark.usefixtures("workspace")  # the test thread works where the app opened by open_page does


def encoded(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _frames() -> bytes:
    frames = [Image.fromarray(noise_image(48, 48, seed=s)).convert("P") for s in range(3)]
    return encoded(frames[0], "GIF", save_all=True, append_images=frames[1:])


UNUSABLE = {  # name → bytes: each must be refused with a message
    "empty.jpg": b"",
    "truncated.jpg": image_bytes(noise_image(300, 300, seed=1), "JPEG")[:2000],
    "bomb.png": encoded(Image.new("1", (20_000, 20_000)), "PNG"),
    "report.pdf.jpg": b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj << /Type /Catalog >> endobj\n",
    "postscript.jpg": b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 64\n(x) (w) file closefile\n",
    "icon.jpg": encoded(Image.fromarray(noise_image(32, 32, seed=3)), "ICO"),
    "texture.jpg": encoded(Image.fromarray(noise_image(32, 32, seed=4)), "DDS"),
}
DECODABLE = {  # unusual but valid photos: decoded (no face in them), never an exception
    "sixteen-bit.png": encoded(Image.fromarray((np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16)), "PNG"),
    "cmyk.jpg": encoded(Image.fromarray(noise_image(64, 64, seed=2)).convert("CMYK"), "JPEG"),
    "animated.gif": _frames(),
}


def app_on(page: str) -> AppTest:
    return open_page(page)


@pytest.mark.parametrize("name", sorted(UNUSABLE))
def test_verify_page_refuses_unusable_files(name: str) -> None:
    at = app_on("pages/verify.py")
    at.selectbox(key="vf_detector").select("dlib-hog").run()
    at.get("file_uploader")[0].upload(name, UNUSABLE[name], "image/jpeg").run()
    assert not at.exception
    errors = [displayed(e.value) for e in at.error]
    assert any(name in error and "cannot be used" in error for error in errors), errors


@pytest.mark.parametrize("name", sorted(DECODABLE))
def test_verify_page_decodes_unusual_formats(name: str) -> None:
    at = app_on("pages/verify.py")
    at.selectbox(key="vf_detector").select("dlib-hog").run()
    at.get("file_uploader")[0].upload(name, DECODABLE[name], "image/png").run()
    assert not at.exception and not at.error
    assert any("no face found" in w.value for w in at.warning)


def test_builder_keeps_good_photos_and_names_each_bad_one() -> None:
    builder.create_dataset("class")
    builder.add_person("class", "Amy")
    at = app_on("pages/dataset.py")
    files = [(name, data, "image/jpeg") for name, data in {**UNUSABLE, **DECODABLE}.items()]
    files.append(("good.png", image_bytes(noise_image(seed=5)), "image/png"))
    at.file_uploader(key="ds_photos_0").set_value(files)
    at.run()
    at.button(key="ds_add_photos").click().run()
    assert not at.exception
    kept = builder.list_photos("class", "Amy")
    assert len(kept) == 1 + len(DECODABLE)
    errors = " ".join(displayed(e.value) for e in at.error)
    for name in UNUSABLE:
        assert name in errors


@pytest.mark.parametrize("person", ["a/b", "..\\..\\x", "tab\tname", "bell\x07", "x" * 300, "  ", "nul"])
def test_builder_refuses_bad_person_names(person: str) -> None:
    builder.create_dataset("class")
    at = app_on("pages/dataset.py")
    at.text_input(key="ds_new_person").input(person)
    at.button(key="ds_add_person").click().run()
    assert not at.exception and at.error
    assert builder.list_people("class") == []


def _zip(entries: list[tuple[zipfile.ZipInfo | str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for info, data in entries:
            archive.writestr(info, data)
    return buffer.getvalue()


def _symlink_entry() -> zipfile.ZipInfo:
    info = zipfile.ZipInfo("train/amy/link.jpg")
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


GOOD = image_bytes(noise_image(seed=7))
HOSTILE_ZIPS = {
    "traversal": _zip([("train/amy/a.png", GOOD), ("../../evil.png", GOOD)]),
    "absolute": _zip([("train/amy/a.png", GOOD), ("/etc/evil.png", GOOD)]),
    "symlink": _zip([("train/amy/a.png", GOOD), (_symlink_entry(), b"/etc/passwd")]),
    "nested": _zip([("train/amy/a.png", GOOD), ("train/amy/more.zip", _zip([("x.png", GOOD)]))]),
    "not a zip": b"PK\x03\x04 this is not really a zip",
}


@pytest.mark.parametrize("kind", sorted(HOSTILE_ZIPS))
def test_zip_import_refuses_hostile_archives(kind: str) -> None:
    at = app_on("pages/dataset.py")
    at.file_uploader(key="ds_zip").upload(f"{kind}.zip", HOSTILE_ZIPS[kind], "application/zip").run()
    at.text_input(key="ds_zip_name").input("imported").run()
    buttons = [b for b in at.button if "Import" in b.label]
    buttons[0].click().run()
    assert not at.exception and at.error
    assert list(datasets_dir().iterdir()) == []  # nothing imported, no temporary folder left behind
