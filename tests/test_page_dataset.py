"""The Dataset page, driven headless with Streamlit's AppTest."""

from __future__ import annotations

import base64
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from core.config import datasets_dir
from core.data import builder
from tests.conftest import displayed, image_bytes, noise_image, open_page

pytestmark = pytest.mark.usefixtures("workspace")  # the test thread works where the app opened by open_page does


def png(seed: int) -> bytes:
    return image_bytes(noise_image(24, 24, seed=seed))


def make_dataset(root: Path) -> Path:
    """train: amy 3, bob 1; validation: amy 1; test: amy 1, bob 1 — bob is missing from validation."""
    seed = 0
    for split, people in {"train": {"amy": 3, "bob": 1}, "validation": {"amy": 1},
                          "test": {"amy": 1, "bob": 1}}.items():
        for person, n in people.items():
            for i in range(n):
                seed += 1
                (root / split / person).mkdir(parents=True, exist_ok=True)
                (root / split / person / f"{i}.png").write_bytes(png(seed))
    return root


def values(data: list | dict) -> list:
    """Plotly 7 stores numeric arrays as base64 typed arrays in the figure JSON."""
    if isinstance(data, dict):
        return np.frombuffer(base64.b64decode(data["bdata"]), dtype=np.dtype(data["dtype"])).tolist()
    return list(data)


def page_app() -> AppTest:
    return open_page("pages/dataset.py", timeout=60)


@pytest.fixture
def shared_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "shared"
    make_dataset(root / "mini")
    monkeypatch.setenv("FACELAB_DATASET_DIRS", str(root))
    return root


def test_audit_of_a_picked_dataset(shared_root: Path) -> None:
    at = page_app()
    picker = at.selectbox(key="ds_pick")
    assert picker.options == [f"mini ({shared_root.resolve()})"]
    at.run()
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["People"] == "2" and metrics["Train"] == "4" and metrics["Validation"] == "1"
    assert metrics["Test"] == "2"
    stacked = json.loads(at.get("plotly_chart")[0].proto.spec)
    bars = {trace["name"]: dict(zip(trace["x"], values(trace["y"]))) for trace in stacked["data"]}
    assert bars == {"train": {"amy": 3, "bob": 1}, "validation": {"amy": 1, "bob": 0}, "test": {"amy": 1, "bob": 1}}
    assert stacked["layout"]["barmode"] == "stack"
    problems = at.dataframe[1].value  # formats table first, then problems
    assert {"missing_from_split", "too_few_train"} <= set(problems["kind"])
    assert any("Count them with a detector" in c.value for c in at.caption)


def test_faces_per_photo_with_a_detector(shared_root: Path) -> None:
    at = page_app()
    at.selectbox(key="ds_face_detector").select("haar").run()
    at.button(key="ds_count_faces").click().run(timeout=120)
    assert not at.exception and not at.error
    chart = json.loads(at.get("plotly_chart")[-1].proto.spec)
    assert "Faces found per photo (haar)" in chart["layout"]["title"]["text"]
    counted = sum(sum(values(trace["y"])) for trace in chart["data"])
    assert counted == 7  # every photo of the synthetic dataset (random noise: no faces expected)
    listed = at.dataframe[-1].value
    assert set(listed.columns) == {"split", "person", "photo", "faces"} and len(listed) == 7
    assert any("disabled by the server" in c.value for c in at.caption)
    assert at.selectbox(key="ds_gallery_split").options == ["train", "validation", "test"]
    assert len(at.get("image")) == 3  # the gallery opens on train/amy
    at.selectbox(key="ds_gallery_person").select("bob")
    at.run()
    assert any(c.value == "1 photo(s)" for c in at.caption) and len(at.get("image")) == 1
    assert not at.exception and not at.error


def test_server_folder_only_when_allowed(shared_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACELAB_ALLOW_SERVER_PATHS", "1")
    other = make_dataset(tmp_path / "elsewhere")
    at = page_app()
    at.selectbox(key="ds_pick").select("Open a folder on the server…")
    at.run()
    at.text_input(key="ds_pick_folder").input(str(tmp_path / "nope"))
    at.run()
    assert any("No folder" in e.value for e in at.error)
    at.text_input(key="ds_pick_folder").input(str(other))
    at.run()
    assert {m.label: m.value for m in at.metric}["People"] == "2"
    assert not at.exception


def test_zip_upload(shared_root: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for i, person in enumerate(["amy", "bob"]):
            archive.writestr(f"faces/train/{person}/{i}.png", png(i))
        archive.writestr("faces/train/amy/notes.txt", b"x")
    at = page_app()
    at.file_uploader(key="ds_zip").upload("faces.zip", buffer.getvalue(), "application/zip")
    at.run()
    at.button(key="ds_zip_import").click()
    at.run()
    assert any("Imported 2 photos of 2 people" in s.value for s in at.success)
    assert any("not kept" in w.value for w in at.warning)
    assert (datasets_dir() / "faces" / "train" / "amy" / "0.png").is_file()
    at.file_uploader(key="ds_zip").set_value(("evil.zip", b"not a zip", "application/zip"))
    at.text_input(key="ds_zip_name").input("evil")
    at.run()
    at.button(key="ds_zip_import").click()
    at.run()
    assert any(e.value.startswith("Import refused") for e in at.error)
    assert not (datasets_dir() / "evil").exists() and not at.exception


def test_builder_flow() -> None:
    at = page_app()
    at.text_input(key="ds_new_name").input("class")
    at.button(key="ds_create").click()
    at.run()
    assert builder.builder_datasets() == ["class"]
    at.text_input(key="ds_new_person").input("../../etc")
    at.button(key="ds_add_person").click()
    at.run()
    assert any("path separator" in e.value for e in at.error)
    assert not at.exception
    at.text_input(key="ds_new_person").input("Amy")
    at.button(key="ds_add_person").click()
    at.run()
    assert builder.list_people("class") == ["Amy"]
    uploader = at.file_uploader(key="ds_photos_0")
    uploader.set_value([(f"{i}.png", png(i), "image/png") for i in range(4)] + [("bad.jpg", b"nope", "image/jpeg")])
    at.run()
    at.button(key="ds_add_photos").click()
    at.run()
    assert len(builder.list_photos("class", "Amy")) == 4
    assert any("Added 4 photo(s)" in displayed(s.value) for s in at.success)
    assert any("bad.jpg" in displayed(e.value) for e in at.error)
    assert any(c.value == "Amy: 4 photo(s)" for c in at.caption)
    first = builder.list_photos("class", "Amy")[0]
    at.button(key=f"ds_remove_{first.name}").click()
    at.run()
    assert len(builder.list_photos("class", "Amy")) == 3 and not first.exists()
    at.button(key="ds_split").click()
    at.run()
    assert (datasets_dir() / "class" / "test" / "Amy").is_dir()
    assert any("Split 3 photos" in s.value for s in at.success)
    at.text_input(key="ds_rename_Amy").input("con")
    at.button(key="ds_rename").click()
    at.run()
    assert any("reserved" in e.value for e in at.error)
    at.checkbox(key="ds_delete_dataset_ok").check()
    at.run()
    at.button(key="ds_delete_dataset").click()
    at.run()
    assert not (datasets_dir() / "class").exists() and not at.exception


def test_webcam_shot() -> None:
    builder.create_dataset("cam")
    builder.add_person("cam", "me")
    at = page_app()
    at.camera_input(key="ds_camera_0").upload("shot.jpg", image_bytes(noise_image(seed=9), "JPEG"), "image/jpeg")
    at.run()
    at.button(key="ds_add_shot").click()
    at.run()
    assert len(builder.list_photos("cam", "me")) == 1 and not at.exception
