"""Which face of a photo is used (issue 12): the rules, their place in the pipeline key, and real two-face photos."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from core.config import limits
from core.data.audit import FACES_COLUMN, several_faces
from core.pipeline.detection.base import Face
from core.pipeline.embeddings import Pipeline, embed_dataset, pipeline_key
from core.pipeline.face_choice import (
    DEFAULT_FACE_CHOICE,
    RULES,
    check_face_choice,
    choice_score,
    order_faces,
    several_faces_note,
)
from tests.conftest import displayed, image_bytes, noise_image, run_cli
from tests.test_embeddings import CountingDetector, MeanColourBackbone
from tests.two_faces import is_subject, two_face_photo

W, H = 640, 480
SUBJECT = Face((280, 180, 80, 80), 0.95)  # central, whole
BYSTANDER = Face((520, 120, 120, 150), 0.99)  # larger, cut off by the right edge (clipped boxes end on it)


def test_an_edge_cut_bystander_larger_than_the_central_face_is_passed_over() -> None:
    assert order_faces([BYSTANDER, SUBJECT], W, H, "largest")[0] == BYSTANDER, "today's rule picks the bystander"
    assert order_faces([BYSTANDER, SUBJECT], W, H, "central") == [SUBJECT, BYSTANDER]
    assert DEFAULT_FACE_CHOICE == "central"


def test_a_larger_whole_subject_beats_a_smaller_face_nearer_the_centre() -> None:
    # five_celebrity's Jerry Seinfeld photo with Julia Louis-Dreyfus (MTCNN's boxes): scored by the box's side,
    # "central" picked her; by its area, him (BENCHMARKS.md, "Which face").
    jerry, julia = Face((73, 24, 35, 52), 0.99), Face((191, 69, 27, 39), 0.99)
    assert order_faces([jerry, julia], 300, 300, "central")[0] == jerry


def test_the_subject_of_a_tight_crop_is_not_taken_for_a_cut_off_face() -> None:
    subject, inner = Face((0, 0, 112, 112), 0.9), Face((25, 25, 62, 62), 0.9)  # a 112×112 crop the face fills, a box inside it
    assert order_faces([subject, inner], 112, 112, "central")[0] == subject


def test_a_single_face_is_chosen_whatever_the_rule() -> None:
    for rule in RULES:
        assert order_faces([BYSTANDER], W, H, rule) == [BYSTANDER]
        assert order_faces([], W, H, rule) == []


def test_the_detector_confidence_decides_between_equally_placed_faces() -> None:
    sure, unsure = Face((200, 200, 60, 60), 0.9), Face((380, 200, 60, 60), 0.3)  # mirror images about the centre
    assert order_faces([unsure, sure], W, H, "central")[0] == sure
    assert choice_score(unsure, W, H, "central", best_score=0.9) < choice_score(sure, W, H, "central", best_score=0.9)
    no_scores = [Face(unsure.box, 0.0), Face(sure.box, 0.0)]  # a detector without a usable score: placement only
    assert order_faces(no_scores, W, H, "central") == no_scores
    assert order_faces([unsure, sure], W, H, "largest") == [unsure, sure], "largest ignores scores (ties keep order)"


def test_the_rule_is_part_of_the_pipeline_key_and_largest_keeps_the_old_key() -> None:
    central, largest = pipeline_key("det", True, "bb", "central"), pipeline_key("det", True, "bb", "largest")
    assert central != largest
    assert largest == f"det|align=True|bb|pixels={limits().max_image_pixels}", "caches made before the rule stay valid"
    assert central == f"{largest}|faces=central"
    detector, backbone = CountingDetector(), MeanColourBackbone()
    assert Pipeline(detector, backbone).key != Pipeline(detector, backbone, face_choice="largest").key


def test_an_unknown_rule_is_one_clear_sentence() -> None:
    with pytest.raises(ValueError, match=r"^unknown face choice 'biggest'; choose one of: largest, central\.$"):
        check_face_choice("biggest")
    with pytest.raises(ValueError, match="unknown face choice"):
        Pipeline(CountingDetector(), MeanColourBackbone(), face_choice="biggest")


class TwoFaces(CountingDetector):
    """The bystander and the subject of the constants above, in any 640×480 image (detector order: largest first)."""

    name = "two-faces"

    def _detect(self, image: np.ndarray) -> list[Face]:
        return [BYSTANDER, SUBJECT]


def test_the_pipeline_puts_the_chosen_face_first_for_training_and_the_cache(tmp_path) -> None:  # noqa: ANN001
    root = tmp_path / "ds"
    for split in ("train", "test"):
        (root / split / "amy").mkdir(parents=True)
        (root / split / "amy" / "a.png").write_bytes(image_bytes(noise_image(H, W, seed=1)))
    central = embed_dataset(root, Pipeline(TwoFaces(), MeanColourBackbone()))
    assert central["train"].boxes == [SUBJECT.box] and central["train"].many_faces == ["train/amy/a.png"]
    largest = embed_dataset(root, Pipeline(TwoFaces(), MeanColourBackbone(), face_choice="largest"))
    assert largest["train"].boxes == [BYSTANDER.box], "another rule is another cache entry, not the first one's order"
    again = Pipeline(TwoFaces(), MeanColourBackbone()).embed([root / "test" / "amy" / "a.png"])[0]
    assert again.cached and again.faces == [SUBJECT, BYSTANDER]


def test_the_audit_and_builder_note_counts_photos_with_several_faces() -> None:
    frame = pd.DataFrame({FACES_COLUMN: ["1", "many", "0", "many", "many"], "photo": list("abcde")})
    assert list(several_faces(frame)["photo"]) == ["b", "d", "e"]
    assert several_faces_note(3) == "3 photos show several faces; the central one is used."
    assert several_faces_note(1, "largest") == "1 photo shows several faces; the largest one is used."
    assert several_faces_note(0) == ""


@pytest.mark.parametrize("detector", ["dlib-hog", "mtcnn"])
def test_a_real_photo_with_a_cut_off_bystander_is_verified_on_its_subject(detector: str) -> None:
    from core.pipeline.backbones import BACKBONES
    from core.pipeline.detection import DETECTORS
    from core.services import verify as service

    data = two_face_photo()
    pipelines = {rule: Pipeline(DETECTORS.get(detector), BACKBONES.get("dlib-resnet"), face_choice=rule) for rule in RULES}
    analyses = {rule: service.analyse_photo(pipe, data, "two.png") for rule, pipe in pipelines.items()}
    assert all(len(analysis.faces) == 2 for analysis in analyses.values())
    assert not is_subject(analyses["largest"].face(0).face.box), "the bystander's box is the larger"
    assert is_subject(analyses["central"].face(0).face.box)


def test_the_cli_verifies_the_face_the_face_choice_picks(tmp_path) -> None:  # noqa: ANN001
    from tests.test_page_verify import photo

    two = tmp_path / "two.png"
    two.write_bytes(two_face_photo())
    madonna = tmp_path / "madonna.jpg"
    madonna.write_bytes(photo("madonna", 1))
    home = tmp_path / "home"
    common = (str(two), str(madonna), "--detector", "dlib-hog", "--backbone", "dlib-resnet", "--json")
    verdicts = {}
    for rule in RULES:
        done = run_cli("verify", *common, "--face-choice", rule, home=home)
        assert done.returncode == 0, done.stderr[-2000:]
        report = json.loads(done.stdout)
        assert report["face_choice"] == rule and report["faces"][0]["faces_found"] == 2
        verdicts[rule] = (is_subject(tuple(report["faces"][0]["box"])), report["verified"])
    assert verdicts == {"central": (True, True), "largest": (False, False)}, "largest compares the bystander"
    done = run_cli("verify", *common, "--face-choice", "biggest", home=home)
    assert done.returncode == 2 and done.stderr.strip() == ("error: unknown face choice 'biggest'; "
                                                            "choose one of: largest, central.")


@pytest.mark.usefixtures("workspace")
def test_the_verify_page_marks_the_used_face_and_verifies_the_subject() -> None:
    from tests.test_page_verify import photo, upload, verify_page

    at = verify_page()
    assert at.selectbox(key="vf_face_choice").value == "central"
    upload(at, 1, "two.png", two_face_photo(), "image/png")
    upload(at, 2, "madonna.jpg", photo("madonna", 1))
    captions = [image.caption for element in at.get("image") for image in element.proto.imgs]
    assert "2 faces found; face 1 (green) is the one the 'central' face choice uses" in captions
    chooser = at.selectbox(key="vf_face1")
    assert chooser.value == 0 and chooser.format_func(0) == "face 1 (used)" and chooser.format_func(1) == "face 2"
    assert any("Same person" in s.value for s in at.success), "face 1 is the subject, Madonna"
    at.selectbox(key="vf_face_choice").select("largest").run()
    assert any("Different people" in w.value for w in at.warning), "largest compares the cut-off bystander"


@pytest.mark.usefixtures("workspace")
def test_the_audit_and_the_builder_flag_photos_with_several_faces(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    from core.data import builder
    from tests.test_page_dataset import page_app
    from tests.test_page_verify import photo

    mini = tmp_path / "shared" / "mini"
    for person, name, data in [("amy", "two.png", two_face_photo()), ("amy", "one.jpg", photo("madonna", 1)),
                               ("bob", "one.jpg", photo("elton_john", 1))]:
        (mini / "train" / person).mkdir(parents=True, exist_ok=True)
        (mini / "train" / person / name).write_bytes(data)
    monkeypatch.setenv("FACELAB_DATASET_DIRS", str(mini.parent))
    at = page_app()
    at.selectbox(key="ds_face_detector").select("dlib-hog").run()
    at.button(key="ds_count_faces").click().run(timeout=120)
    notes = [displayed(i.value) for i in at.info]
    assert ("1 photo shows several faces; the central one is used. Check that it is the person the folder names "
            "(the table below lists them).") in notes
    assert list(at.dataframe[-1].value["photo"]) == ["train/amy/two.png"]

    builder.create_dataset("class")
    builder.add_person("class", "Amy")
    at = page_app()
    assert at.toggle(key="ds_check_faces").value
    at.file_uploader(key="ds_photos_0").set_value([("two.png", two_face_photo(), "image/png"),
                                                   ("one.jpg", photo("madonna", 1), "image/jpeg")]).run()
    at.button(key="ds_add_photos").click().run(timeout=180)
    warnings = [displayed(w.value) for w in at.warning]
    assert "1 photo shows several faces; the central one is used. Check that it is Amy: two.png." in warnings


def test_a_predict_card_tags_the_face_that_answers_for_the_photo(monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    from core.services import predict

    drawn: list[list[str]] = []
    monkeypatch.setattr(predict, "draw_labels", lambda image, labels: drawn.append([label.text for label in labels]))
    face = SimpleNamespace(box=(0, 0, 4, 4), label="amy", confidence=0.9, unknown=False)
    stranger = SimpleNamespace(box=(4, 0, 4, 4), label="unknown", confidence=0.4, unknown=True)
    image = np.zeros((8, 8, 3), np.uint8)
    predict.Predictor.annotate(None, image, SimpleNamespace(faces=[face, stranger]))  # type: ignore[arg-type]
    predict.Predictor.annotate(None, image, SimpleNamespace(faces=[face]))  # type: ignore[arg-type]
    assert drawn == [["answer: amy 90%", predict.UNKNOWN_LABEL], ["amy 90%"]]
