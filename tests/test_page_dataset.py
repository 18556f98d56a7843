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


def test_problems_metric_counts_the_rows_listed_under_problems(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A dataset whose only finding is a note (no test/ folder): the metric, the heading and the list agree on 0,
    and the note is still shown, apart. Then a dataset with warnings: again the same number in both places."""
    seed = 0
    for split, n in (("train", 2), ("validation", 1)):
        for person in ("amy", "bob"):
            for i in range(n):
                seed += 1
                (tmp_path / "shared" / "notes" / split / person).mkdir(parents=True, exist_ok=True)
                (tmp_path / "shared" / "notes" / split / person / f"{i}.png").write_bytes(png(seed))
    make_dataset(tmp_path / "shared" / "warnings")
    monkeypatch.setenv("FACELAB_DATASET_DIRS", str(tmp_path / "shared"))
    at = page_app()
    picker = at.selectbox(key="ds_pick")
    picker.select(next(o for o in picker.options if o.startswith("notes ("))).run()
    headings = [h.value for h in at.subheader if h.value.startswith("Problems (")]
    assert {m.label: m.value for m in at.metric}["Problems"] == "0" and headings == ["Problems (0)"]
    assert any(s.value == "No problems found." for s in at.success)
    assert [e.label for e in at.expander if e.label.startswith("Notes")] == ["Notes (1): worth knowing, nothing to fix"]
    picker.select(next(o for o in picker.options if o.startswith("warnings ("))).run()
    count = {m.label: m.value for m in at.metric}["Problems"]
    assert int(count) > 0 and [h.value for h in at.subheader if h.value.startswith("Problems (")] == [f"Problems ({count})"]
    assert len(at.dataframe[1].value) == int(count) and not at.exception


def test_builder_selects_what_was_just_made_and_empties_the_boxes() -> None:
    """After Add person the Person selector is on the new person (the Add button names them), and every text
    box that was used is empty again: before, "Add 8 photo(s) to Roger Federer" added Serena's photos."""
    at = page_app()
    at.text_input(key="ds_new_name").input("tennis")
    at.button(key="ds_create").click().run()
    assert at.selectbox(key="ds_builder_dataset").value == "tennis" and at.text_input(key="ds_new_name").value == ""
    for person in ("Roger Federer", "Serena Williams"):
        at.text_input(key="ds_new_person").input(person)
        at.button(key="ds_add_person").click().run()
        assert at.selectbox(key="ds_builder_person").value == person
        assert at.text_input(key="ds_new_person").value == ""
    at.file_uploader(key="ds_photos_0").set_value([(f"{i}.png", png(i), "image/png") for i in range(2)])
    at.run()
    assert displayed(at.button(key="ds_add_photos").label) == "Add 2 photo(s) to Serena Williams"
    at.button(key="ds_add_photos").click().run()
    assert len(builder.list_photos("tennis", "Serena Williams")) == 2 and builder.list_photos("tennis", "Roger Federer") == []
    at.text_input(key="ds_rename_Serena Williams").input("Venus Williams")
    at.button(key="ds_rename").click().run()
    assert at.selectbox(key="ds_builder_person").value == "Venus Williams"
    assert at.text_input(key="ds_rename_Venus Williams").value == ""
    at.text_input(key="ds_new_name").input("chess")
    at.button(key="ds_create").click().run()
    assert at.selectbox(key="ds_builder_dataset").value == "chess" and not at.exception and not at.error


def flat_zip(people: dict[str, int]) -> bytes:
    """A Teachable-Machine-style zip: ``<person>/<photo>`` only, no split folders."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        seed = 100
        for person, n in people.items():
            for i in range(n):
                seed += 1
                archive.writestr(f"{person}/{i}.png", png(seed))
    return buffer.getvalue()


def test_zip_name_comes_from_the_file_and_a_flat_zip_is_split() -> None:
    at = page_app()
    at.file_uploader(key="ds_zip").upload("My faces (2).zip", flat_zip({"amy": 10, "bob": 10}), "application/zip")
    at.run()
    assert at.text_input(key="ds_zip_name").value == "My faces 2"
    at.button(key="ds_zip_import").click().run()
    message = displayed(at.success[0].value)
    assert message.startswith("Flat zip (no train/validation/test folders): 20 photos of 2 people split 70/15/15 "
                              "(14 train, 4 validation, 2 test), imported as 'My faces 2'."), message
    root = datasets_dir() / "My faces 2"
    assert sorted(p.name for p in root.iterdir()) == ["test", "train", "validation"]
    assert len(list((root / "train" / "amy").iterdir())) == 7
    at.text_input(key="ds_zip_name").input("typed").run()
    at.file_uploader(key="ds_zip").upload("other.zip", flat_zip({"amy": 3, "bob": 3}), "application/zip")
    at.run()
    assert at.text_input(key="ds_zip_name").value == "typed" and not at.exception
