"""The Verify service and the ``verify``/``calibrate`` commands on real photos (dlib HOG + dlib ResNet, offline)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core.compare.calibration import list_calibrations
from core.images import ImageError
from core.pipeline.backbones import BACKBONES
from core.pipeline.detection import DETECTORS
from core.pipeline.embeddings import Pipeline
from core.services import calibrate as calibrate_service
from core.services import gallery as gallery_service
from core.services import verify as service
from tests.conftest import ROOT, image_bytes

PEOPLE = ("madonna", "elton_john", "jerry_seinfeld")


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    return Pipeline(DETECTORS.get("dlib-hog"), BACKBONES.get("dlib-resnet"))


def photo_path(five_celebrity: Path, person: str, index: int) -> Path:
    return sorted((five_celebrity / "train" / person).iterdir())[index]


def analyse(pipeline: Pipeline, path: Path, with_steps: bool = False) -> service.PhotoAnalysis:
    return service.analyse_photo(pipeline, path.read_bytes(), path.name, with_steps=with_steps)


@pytest.fixture
def tiny_dataset(tmp_path: Path, five_celebrity: Path) -> Path:
    """Three train photos each of three people (copied: calibration keys on the dataset's files)."""
    root = tmp_path / "tiny"
    for person in PEOPLE:
        (root / "train" / person).mkdir(parents=True)
        for index in range(3):
            source = photo_path(five_celebrity, person, index)
            (root / "train" / person / source.name).write_bytes(source.read_bytes())
    return root


def test_same_person_is_verified_and_different_people_are_not(pipeline: Pipeline, five_celebrity: Path) -> None:
    first, same, other = (analyse(pipeline, photo_path(five_celebrity, person, i))
                          for person, i in (("madonna", 0), ("madonna", 1), ("elton_john", 0)))
    match = service.compare(pipeline, first.face(0), same.face(0))
    assert match.verified and match.confidence > 0.5
    assert match.metric == "euclidean" and match.threshold == pytest.approx(0.6)  # dlib's documented threshold
    assert match.threshold_source == "default"
    stranger = service.compare(pipeline, first.face(0), other.face(0))
    assert not stranger.verified and stranger.confidence < 0.5
    assert stranger.distances["euclidean"] > match.distances["euclidean"]


def test_steps_are_drawn_for_the_page(pipeline: Pipeline, five_celebrity: Path) -> None:
    analysis = analyse(pipeline, photo_path(five_celebrity, "madonna", 0), with_steps=True)
    view = analysis.face(0)
    assert view.aligned.aligned and view.aligned.crop.shape == (150, 150, 3)
    for image in (view.detected, view.eye_line, view.network_input, analysis.overview):
        assert image is not None and image.dtype == np.uint8 and image.ndim == 3
    assert view.network_input.min() == 0 and view.network_input.max() == 255
    assert view.aligned.rotated is None  # the whole rotated photo is dropped once drawn
    assert view.to_dict(0)["box"] == list(view.face.box)


def test_display_input_stretches_any_range_to_bytes() -> None:
    shown = service.display_input(np.array([[-100.0, 0.0], [50.0, 100.0]]))
    assert shown.dtype == np.uint8 and shown.min() == 0 and shown.max() == 255
    assert (service.display_input(np.full((2, 2), 7.0)) == 0).all()  # flat input: no division by zero


def test_no_face_and_non_image_give_clear_errors(pipeline: Pipeline) -> None:
    blank = image_bytes(np.full((200, 200, 3), 128, np.uint8))
    with pytest.raises(service.NoFaceError, match="grey.png: no face found by the dlib-hog detector; try another"):
        service.analyse_photo(pipeline, blank, "grey.png")
    with pytest.raises(ImageError, match="notes.jpg: not an image"):
        service.analyse_photo(pipeline, b"plain text", "notes.jpg")


def test_several_photos_at_once_give_what_one_at_a_time_gives(pipeline: Pipeline, five_celebrity: Path) -> None:
    paths = [photo_path(five_celebrity, person, 0) for person in ("madonna", "elton_john")]
    together = service.analyse_photos(pipeline, [(path.read_bytes(), path.name) for path in paths], with_steps=True)
    for path, batched in zip(paths, together):
        alone = analyse(pipeline, path, with_steps=True)
        assert batched.name == path.name and len(batched.faces) == len(alone.faces)
        np.testing.assert_allclose(batched.face(0).embedding, alone.face(0).embedding, atol=1e-6)
        assert batched.face(0).network_input.shape == alone.face(0).network_input.shape
    blank = image_bytes(np.full((200, 200, 3), 128, np.uint8))
    with pytest.raises(service.NoFaceError, match="^second.png: no face"):
        service.analyse_photos(pipeline, [(paths[0].read_bytes(), "first.jpg"), (blank, "second.png")])


def test_asking_for_a_missing_face_names_how_many_there_are(pipeline: Pipeline, five_celebrity: Path) -> None:
    analysis = analyse(pipeline, photo_path(five_celebrity, "madonna", 0))
    with pytest.raises(ValueError, match="there is no face 3; the photo has 1"):
        analysis.face(3)


def test_calibration_round_trip(pipeline: Pipeline, tiny_dataset: Path, five_celebrity: Path) -> None:
    assert calibrate_service.find_calibration(pipeline, tiny_dataset) is None
    gallery = gallery_service.build_gallery(pipeline, tiny_dataset)
    assert sorted(set(gallery.labels)) == sorted(PEOPLE) and gallery.photos == 9 and not gallery.no_face
    made = calibrate_service.calibrate_gallery(pipeline, gallery)
    assert (made.n_genuine, made.n_impostor, made.metric) == (9, 27, "euclidean")
    assert made.context == calibrate_service.calibration_context(pipeline, gallery.fingerprint)
    assert calibrate_service.find_calibration(pipeline, tiny_dataset) == made
    assert calibrate_service.find_calibration(pipeline) == made  # newest with this detector, alignment and backbone
    unaligned = Pipeline(pipeline.detector, pipeline.backbone, align=False)
    assert calibrate_service.find_calibration(unaligned) is None and calibrate_service.find_calibration(unaligned, tiny_dataset) is None

    first, second = (analyse(pipeline, photo_path(five_celebrity, "madonna", i)).face(0) for i in (0, 1))
    verdict = service.compare(pipeline, first, second, made)
    assert verdict.threshold_source == "calibrated" and verdict.thresholds == made.thresholds

    matches = gallery_service.identify(gallery, first.embedding, "euclidean", k=2)
    assert matches[0].person == "madonna" and matches[0].distance < 1e-3  # the photo itself is in the dataset
    assert len(matches) == 2 and matches[0].path.is_file()
    points, marked = gallery_service.embedding_map(gallery, [first.embedding, second.embedding])
    assert points.shape == (len(gallery.labels), 2) and marked.shape == (2, 2)


def test_calibration_needs_two_people(pipeline: Pipeline, tiny_dataset: Path) -> None:
    for person in PEOPLE[1:]:
        for path in (tiny_dataset / "train" / person).iterdir():
            path.unlink()
    with pytest.raises(ValueError, match="two people"):
        calibrate_service.calibrate_gallery(pipeline, gallery_service.build_gallery(pipeline, tiny_dataset))


# ---------------------------------------------------------------- command line


def cli(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "FACELAB_HOME": str(home), "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", "core", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=180)


def test_cli_calibrate_then_verify_uses_the_calibration(tiny_dataset: Path, five_celebrity: Path,
                                                          facelab_home: Path) -> None:
    photos = [str(photo_path(five_celebrity, "madonna", 0)), str(photo_path(five_celebrity, "elton_john", 1))]
    done = cli("calibrate", str(tiny_dataset), "--detector", "dlib-hog", "--json", home=facelab_home)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["n_genuine"], report["n_impostor"]) == (9, 27)  # 3 people × C(3,2); 3 pairs of people × 3·3
    assert 0.5 <= report["auc"] <= 1.0 and 0.0 <= report["eer"] <= 0.5 and report["threshold"] > 0
    assert Path(report["saved"]).is_file() and len(list_calibrations()) == 1

    done = cli("verify", *photos, "--detector", "dlib-hog", "--json", home=facelab_home)
    assert done.returncode == 0, done.stderr
    verdict = json.loads(done.stdout)
    assert set(verdict["distances"]) == set(verdict["thresholds"]) == {"cosine", "euclidean", "euclidean_l2"}
    assert verdict["verified"] is False and 0.0 <= verdict["confidence"] <= 1.0
    assert verdict["threshold_source"] == "calibrated" and verdict["threshold"] == pytest.approx(report["threshold"])
    assert [face["index"] for face in verdict["faces"]] == [0, 0]
    assert all(len(face["box"]) == 4 and face["score"] > 0 for face in verdict["faces"])

    pinned = cli("verify", *photos, "--detector", "dlib-hog", "--calibration", str(tiny_dataset), "--no-align",
                 home=facelab_home)
    assert pinned.returncode == 2 and "no calibration for" in pinned.stderr
    assert "Traceback" not in pinned.stderr


def test_cli_errors_are_one_line_with_exit_code_2(tmp_path: Path, five_celebrity: Path, facelab_home: Path) -> None:
    text = tmp_path / "notes.jpg"
    text.write_text("not a photo")
    blank = tmp_path / "blank.png"
    blank.write_bytes(image_bytes(np.full((120, 120, 3), 200, np.uint8)))
    good = str(photo_path(five_celebrity, "madonna", 0))
    for bad, message in ((text, "not an image"), (blank, "no face found")):
        done = cli("verify", good, str(bad), "--detector", "dlib-hog", "--json", home=facelab_home)
        assert done.returncode == 2 and done.stdout == ""
        errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and message in errors[0] and bad.name in errors[0]
        assert "Traceback" not in done.stderr
