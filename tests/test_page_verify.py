"""The Verify page driven headless with Streamlit's AppTest (dlib HOG + dlib ResNet: no TensorFlow needed)."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from tests.conftest import FinetunedRun, displayed, image_bytes, open_page, shared_dataset

pytestmark = pytest.mark.usefixtures("workspace")  # the test thread works where the app opened by open_page does


def photo(person: str, index: int) -> bytes:
    folder = shared_dataset("five_celebrity_faces") / "train" / person
    return sorted(folder.iterdir())[index].read_bytes()


def mini_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Four train photos each of three people, offered to the page as a shared dataset."""
    source = shared_dataset("five_celebrity_faces")
    mini = tmp_path / "shared" / "mini"
    for person in ("madonna", "elton_john", "jerry_seinfeld"):
        (mini / "train" / person).mkdir(parents=True)
        for path in sorted((source / "train" / person).iterdir())[:4]:
            (mini / "train" / person / path.name).write_bytes(path.read_bytes())
    monkeypatch.setenv("FACELAB_DATASET_DIRS", str(mini.parent))
    return mini


def verify_page() -> AppTest:
    at = open_page("pages/verify.py")
    at.selectbox(key="vf_detector").select("dlib-hog")
    at.run()
    return at


def upload(at: AppTest, n: int, name: str, data: bytes, mime: str = "image/jpeg") -> None:
    at.get("file_uploader")[n - 1].upload(name, data, mime)
    at.run()
    assert not at.exception


def test_two_uploads_give_a_verdict_and_three_barcodes() -> None:
    at = verify_page()
    upload(at, 1, "a.jpg", photo("madonna", 0))
    upload(at, 2, "b.jpg", photo("madonna", 1))
    assert any("Same person" in s.value for s in at.success)
    assert any("defaults" in i.value for i in at.info)  # nothing calibrated in a fresh home
    specs = [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]
    barcodes = [s for s in specs if s["data"] and s["data"][0]["type"] == "heatmap"]
    assert len(barcodes) == 3
    titles = [s["layout"]["title"]["text"] for s in barcodes]
    assert titles == ["Photo 1", "Photo 2", "|photo 1 − photo 2|"]
    first, second = barcodes[0]["data"][0], barcodes[1]["data"][0]
    assert (first["zmin"], first["zmax"]) == (second["zmin"], second["zmax"]) == (-0.35, 0.35)  # dlib's fixed scale
    assert (barcodes[2]["data"][0]["zmin"], barcodes[2]["data"][0]["zmax"]) == (0.0, 0.2)
    assert "slot" in first["hovertemplate"]
    table = at.dataframe[0].value
    assert list(table["metric"]) == ["cosine", "euclidean", "euclidean (L2-normalised)"]

    upload(at, 2, "c.jpg", photo("elton_john", 0))
    assert any("Different people" in w.value for w in at.warning)


def test_search_button_embeds_the_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mini_dataset(tmp_path, monkeypatch)
    at = verify_page()
    upload(at, 1, "a.jpg", photo("madonna", 0))
    assert any("second photo" in i.value for i in at.info)
    at.button(key="vf_search").click().run()
    assert not at.exception
    assert any("Who is this" in h.value for h in at.subheader)
    best = [c.value for c in at.caption if "\n\n" in c.value][0]
    person, distance, note = best.split("\n\n")
    assert person == "madonna" and float(distance) < 1e-3  # the photo itself is in the dataset, and said so
    assert note == "this photo itself is in the gallery"


def test_a_non_image_upload_shows_an_error_not_an_exception() -> None:
    at = verify_page()
    upload(at, 1, "notes.jpg", b"this is not a photo")
    assert any("cannot be used" in e.value and "not an image" in e.value for e in at.error)


def test_a_photo_without_a_face_suggests_another_detector() -> None:
    at = verify_page()
    upload(at, 1, "grey.png", image_bytes(np.full((160, 160, 3), 90, np.uint8)), "image/png")
    assert any("no face found" in w.value and "try another detector" in w.value for w in at.warning)
    assert not at.error


def test_a_second_photo_without_a_face_is_not_asked_for_again() -> None:
    at = verify_page()
    upload(at, 1, "a.jpg", photo("madonna", 0))
    assert any("Add the second photo" in i.value for i in at.info)
    upload(at, 2, "grey.png", image_bytes(np.full((160, 160, 3), 90, np.uint8)), "image/png")
    assert any("no face found by the dlib-hog detector" in displayed(w.value) for w in at.warning)
    assert not any("Add the second photo" in i.value for i in at.info)


def test_alignment_toggle_reports_how_the_distance_changes() -> None:
    at = verify_page()
    upload(at, 1, "a.jpg", photo("madonna", 0))
    upload(at, 2, "b.jpg", photo("madonna", 1))
    at.toggle(key="vf_align").set_value(False).run()
    assert not at.exception
    distance = at.metric[0]
    assert distance.delta and "alignment" in distance.delta
    captions = [image.caption for element in at.get("image") for image in element.proto.imgs]
    assert any("not rotated" in caption for caption in captions)


def test_calibration_on_a_picked_dataset_is_used_for_the_verdict(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    mini_dataset(tmp_path, monkeypatch)
    at = verify_page()
    upload(at, 1, "a.jpg", photo("madonna", 0))
    upload(at, 2, "b.jpg", photo("madonna", 1))
    at.button(key="vf_calibrate").click().run()
    assert not at.exception
    assert not at.error
    assert any("calibrated on mini" in c.value and "decides on" in c.value for c in at.caption)
    assert any("This calibration decides on" in m.value and "EER" in m.value for m in at.markdown)
    labels = {m.label: m.value for m in at.metric}
    assert {"AUC", "EER", "Threshold"} <= set(labels)
    titles = [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")]
    assert any(t.startswith("ROC curve") for t in titles)
    histogram = next(json.loads(c.proto.spec) for c in at.get("plotly_chart") if "distances" in
                     json.loads(c.proto.spec)["layout"]["title"]["text"])
    assert [bar["marker"]["color"] for bar in histogram["data"]] == ["#2ca02c", "#ff7f0e"]  # green vs orange

    # the dataset is embedded now, so 1:N search and the map show up without their button
    assert not [b for b in at.button if b.key == "vf_search"]
    assert any("Who is this" in h.value for h in at.subheader)
    assert any(c.value.startswith("madonna") for c in at.caption)
    map_spec = json.loads(at.get("plotly_chart")[-1].proto.spec)
    names = {trace["name"] for trace in map_spec["data"]}
    assert {"madonna", "elton_john", "jerry_seinfeld", "Photo 1", "Photo 2"} <= names


def test_a_crowded_photo_says_how_many_faces_were_left_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACELAB_MAX_FACES", "3")
    face = np.asarray(Image.open(io.BytesIO(photo("madonna", 0))).convert("RGB"))
    tile = np.concatenate([np.concatenate([face, face], axis=1)] * 2, axis=0)  # one face, four times
    at = verify_page()
    upload(at, 1, "tile.png", image_bytes(tile), "image/png")
    captions = [image.caption for element in at.get("image") for image in element.proto.imgs]
    assert "4 faces found, the 3 largest were used; face 1 (green) is the one the 'central' face choice uses" in captions
    assert len(at.selectbox(key="vf_face1").options) == 3


def test_a_photo_above_the_pixel_limit_is_refused_with_its_size() -> None:
    bomb = io.BytesIO()
    Image.new("1", (7745, 7745)).save(bomb, format="PNG")  # 60 megapixels in a few kilobytes
    at = verify_page()
    upload(at, 1, "huge.png", bomb.getvalue(), "image/png")
    assert any("Photo 1 cannot be used: huge.png: image is 7745×7745 pixels, above the limit of 24 megapixels"
               in displayed(e.value) for e in at.error)


def test_a_fine_tuned_run_is_offered_and_verifies_in_its_own_space(finetuned_dlib_run: FinetunedRun) -> None:
    from core.runs import delete_run
    from core.services import finetuned
    from core.services.verify import analyse_photos, compare

    run_id = finetuned_dlib_run.install()
    at = verify_page()
    picker = at.selectbox(key="vf_backbone")
    assert "Fine-tuned run: fine-tuned dlib-resnet · five (dlib-resnet)" in picker.options
    picker.select(f"run:{run_id}").run()
    assert not at.exception and not at.error
    upload(at, 1, "a.jpg", photo("madonna", 0))
    upload(at, 2, "b.jpg", photo("madonna", 1))
    assert [s.value for s in at.success] or [w.value for w in at.warning if "people" in w.value], "a verdict is drawn"
    tuned = finetuned.pipeline("dlib-hog", f"run:{run_id}")
    faces = analyse_photos(tuned, [(photo("madonna", 0), "a"), (photo("madonna", 1), "b")])
    expected = compare(tuned, faces[0].face(0), faces[1].face(0))
    distance, threshold = at.metric[0], at.metric[1]
    assert distance.label == "cosine distance" and float(distance.value) == pytest.approx(expected.distance, abs=1e-4)
    assert float(threshold.value) == pytest.approx(tuned.backbone.default_thresholds["cosine"], abs=1e-4)
    assert any("validation faces in its fine-tuned space" in displayed(i.value) for i in at.info)
    specs = [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]
    barcodes = [s for s in specs if s["data"] and s["data"][0]["type"] == "heatmap"]
    assert len(barcodes) == 3
    z = barcodes[0]["data"][0]["z"]  # plotly's typed array: base64 bytes, dtype and shape
    drawn = np.frombuffer(base64.b64decode(z["bdata"]), z["dtype"]).reshape(-1, 128)
    own = faces[0].face(0).embedding
    # photo 1's fine-tuned embedding, divided by its length: a fine-tuned space has no measured barcode range
    np.testing.assert_allclose(drawn[0], own / np.linalg.norm(own), atol=1e-5)

    delete_run(run_id)  # e.g. on the Train page, while this page keeps the choice
    at.run()
    assert not at.exception and at.selectbox(key="vf_backbone").value == "dlib-resnet"
