"""Issue 12, honest alignment: "align off" cuts the same crop and only leaves out the rotation; the detector-box
framing is a setting of its own ("crop": "box"), named in the pipeline key and on the command line."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import core.api
from core.cli import build_parser
from core.cli._pipeline import build_pipeline
from core.compare.calibration import calibrate, save_calibration
from core.config import limits
from core.images import load_image
from core.pipeline.alignment import CROPS, DEFAULT_CROP, ROTATION_OFF, AlignedFace, align_face
from core.pipeline.backbones import BACKBONES
from core.pipeline.detection.base import Detector, Face
from core.pipeline.embeddings import Pipeline, pipeline_key
from core.services.calibrate import calibration_context, find_calibration
from tests.conftest import identity_clusters
from tests.test_verify_service import MeanColour

TILT = 20.0  # degrees the test photo is turned by


class SquareBackbone(MeanColour):
    """A backbone with the generic crop (the detector box squared with a margin), at 64 px."""

    input_size = 64


class OwnCropBackbone(SquareBackbone):
    """A backbone with a framing of its own: an all-white crop, so a test sees which framing the pipeline used."""

    name = "own-crop"

    def align(self, image: np.ndarray, face: Face, rotate: bool = True, keep_steps: bool = False) -> AlignedFace:
        return AlignedFace(crop=np.full((64, 64, 3), 255, np.uint8), aligned=rotate, angle=0.0, eyes=None)


class OneFace(Detector):
    """The same face box, with eyes, in every image."""

    name = "one-face"

    def _detect(self, image: np.ndarray) -> list[Face]:
        return [Face((60, 60, 80, 80), 1.0, (80.0, 90.0), (120.0, 104.0))]


def smooth_image(size: int = 200, seed: int = 0) -> np.ndarray:
    """Large soft blobs: rotating a crop of it twice costs little interpolation error, unlike pixel noise."""
    import cv2

    small = np.random.default_rng(seed).integers(0, 256, (size // 10, size // 10, 3), dtype=np.uint8)
    return cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)


def turned(crop: np.ndarray, angle: float) -> np.ndarray:
    """``crop`` rotated by ``angle`` degrees about its centre, as the aligners rotate photos."""
    import cv2

    side = crop.shape[0]
    centre = ((side - 1) / 2, (side - 1) / 2)
    return cv2.warpAffine(crop, cv2.getRotationMatrix2D(centre, angle, 1.0), (side, side), flags=cv2.INTER_LINEAR)


def centre_difference(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute pixel difference inside the central disc (the corners of a turned square hold other pixels)."""
    side = a.shape[0]
    yy, xx = np.mgrid[:side, :side]
    disc = (yy - (side - 1) / 2) ** 2 + (xx - (side - 1) / 2) ** 2 < (0.33 * side) ** 2
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16))[disc].mean())


# --- generic backbones: the same square ---------------------------------------------------------------------

def test_generic_backbone_with_rotation_off_cuts_the_same_square_unrotated() -> None:
    image = smooth_image()
    face = OneFace()._detect(image)[0]
    on = SquareBackbone().align(image, face)
    off = SquareBackbone().align(image, face, rotate=False)
    assert on.aligned and on.angle == pytest.approx(math.degrees(math.atan2(14, 40)))
    assert not off.aligned and off.reason == ROTATION_OFF
    assert off.crop_box[2:] == on.crop_box[2:]  # the same side …
    assert centre_difference(turned(off.crop, on.angle), on.crop) < 3  # … and centre: turning it gives the aligned one
    assert centre_difference(off.crop, on.crop) > 10  # the rotation itself does change the crop


# --- dlib's ResNet: its chip ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def upright_face(five_celebrity: Path) -> tuple[np.ndarray, Face]:
    """A celebrity photo turned so dlib's chip angle is about 0, with dlib's face box (found on the turned photo)."""
    import cv2
    import dlib

    image = load_image(sorted((five_celebrity / "train" / "madonna").iterdir())[0])
    detector = dlib.get_frontal_face_detector()
    rect = detector(image, 1)[0]
    face = Face((rect.left(), rect.top(), rect.width(), rect.height()), 1.0)
    angle = BACKBONES.get("dlib-resnet").align(image, face).angle
    centre = (face.box[0] + face.box[2] / 2, face.box[1] + face.box[3] / 2)
    levelled = cv2.warpAffine(image, cv2.getRotationMatrix2D(centre, angle, 1.0), image.shape[1::-1])
    rect = detector(levelled, 1)[0]
    return levelled, Face((rect.left(), rect.top(), rect.width(), rect.height()), 1.0)


def tilt(image: np.ndarray, face: Face, angle: float) -> np.ndarray:
    """The photo turned by ``angle`` degrees about the face's centre (the face box still holds the face)."""
    import cv2

    centre = (face.box[0] + face.box[2] / 2, face.box[1] + face.box[3] / 2)
    return cv2.warpAffine(image, cv2.getRotationMatrix2D(centre, angle, 1.0), image.shape[1::-1])


def test_dlib_with_rotation_off_keeps_the_chip_on_an_upright_face(upright_face) -> None:
    image, face = upright_face
    dlib_resnet = BACKBONES.get("dlib-resnet")
    on, off = dlib_resnet.align(image, face), dlib_resnet.align(image, face, rotate=False)
    assert abs(on.angle) < 1.5  # the photo is upright
    assert not off.aligned and off.angle == 0 and off.reason == ROTATION_OFF
    assert off.crop.shape == on.crop.shape == (150, 150, 3)
    assert np.allclose(off.crop_box, on.crop_box, atol=2)  # same centre, same scale
    assert centre_difference(off.crop, on.crop) < 4  # nearly the same pixels (the chip was at most 1.5° off)
    box = dlib_resnet.box_crop(image, face)
    assert centre_difference(box.crop, on.crop) > 15  # while the box framing is another picture altogether


def test_dlib_with_rotation_off_on_a_tilted_face_differs_only_by_the_rotation(upright_face) -> None:
    image, face = upright_face
    tilted = tilt(image, face, TILT)
    dlib_resnet = BACKBONES.get("dlib-resnet")
    on, off = dlib_resnet.align(tilted, face), dlib_resnet.align(tilted, face, rotate=False)
    assert on.angle == pytest.approx(-TILT, abs=3)
    assert np.allclose(off.crop_box, on.crop_box, atol=2)
    assert centre_difference(off.crop, on.crop) > 15  # 20° of rotation is visible …
    assert centre_difference(turned(off.crop, on.angle), on.crop) < 3  # … and turning the crop back undoes it all
    box = dlib_resnet.box_crop(tilted, face)
    assert centre_difference(turned(box.crop, on.angle), on.crop) > 15  # the box crop differs by more than rotation


def test_the_box_crop_is_the_generic_square_for_every_backbone(upright_face) -> None:
    image, face = upright_face
    box = BACKBONES.get("dlib-resnet").box_crop(image, face)
    np.testing.assert_array_equal(box.crop, align_face(image, face, size=150, margin=0.2, rotate=False).crop)


# --- the pipeline: its key and which framing it cuts --------------------------------------------------------

def test_every_rotation_and_crop_has_its_own_pipeline_key() -> None:
    pixels = f"pixels={limits().max_image_pixels}"
    keys = {(align, crop): pipeline_key("d", align, "b", "largest", crop) for align in (True, False) for crop in CROPS}
    assert len(set(keys.values())) == 4
    assert keys[True, DEFAULT_CROP] == f"d|align=True|b|{pixels}"  # rotated chips keep their cache entries' key
    # "align=False" meant the box crop before issue 12: no key says it any more, so no such entry is reused
    assert f"d|align=False|b|{pixels}" not in keys.values()
    assert keys[False, "chip"] == f"d|rotate=False|crop=chip|b|{pixels}"
    assert Pipeline(OneFace(), SquareBackbone(), align=False, crop="box").key.count("|rotate=False|crop=box|") == 1


def test_an_unknown_crop_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match="unknown crop 'square'; choose one of: chip, box"):
        Pipeline(OneFace(), SquareBackbone(), crop="square")


def test_the_pipeline_cuts_the_backbones_own_crop_or_the_box() -> None:
    image = smooth_image()
    own = Pipeline(OneFace(), OwnCropBackbone(), align=False)
    box = Pipeline(OneFace(), OwnCropBackbone(), align=False, crop="box")
    [(_, chip)] = own.faces(image)
    [(_, square)] = box.faces(image)
    assert chip.crop.min() == 255  # the backbone's own framing, rotation off
    np.testing.assert_array_equal(square.crop, align_face(image, OneFace()._detect(image)[0], 64, 0.2, rotate=False).crop)


# --- calibrations and runs saved before the crop setting ----------------------------------------------------

def test_a_calibration_saved_before_the_crop_setting_keeps_the_framing_it_was_made_with(tmp_path: Path) -> None:
    def pipeline(align: bool, crop: str) -> SimpleNamespace:
        return SimpleNamespace(detector=SimpleNamespace(cache_key=lambda: "d"), align=align, crop=crop,
                               backbone=SimpleNamespace(cache_key=lambda: "b", decision_metric="euclidean"))

    embeddings, labels = identity_clusters(people=3, per_person=4, dim=8, noise=0.1)
    context = calibration_context(pipeline(False, "box"), "fingerprint", "old")
    del context["crop"]  # saved when "align off" meant the box crop
    save_calibration(calibrate(embeddings, labels, metric="euclidean", context=context))
    assert find_calibration(pipeline(False, "box")) is not None
    assert find_calibration(pipeline(False, "chip")) is None  # not for the new "same crop, not rotated"


# --- the command line ------------------------------------------------------------------------------------------

def parsed(*options: str) -> dict:
    """What ``python -m core embed ds OPTIONS`` hands core.api.pipeline (keyword arguments)."""
    return build_pipeline(build_parser().parse_args(["embed", "ds", *options]))  # type: ignore[return-value]


def test_cli_no_align_keeps_the_crop_and_crop_box_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(core.api, "pipeline", lambda *args, **settings: settings)
    assert parsed()["align"] is True and parsed()["crop"] == "chip"
    assert parsed("--no-align")["align"] is False and parsed("--no-align")["crop"] == "chip"
    assert parsed("--crop", "box") | {"face_choice": None} == {"align": True, "crop": "box", "face_choice": None}
    assert parsed("--no-align", "--crop", "box")["align"] is False


def test_cli_help_says_what_no_align_and_crop_do(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["embed", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--no-align do not rotate faces to level the eyes: the same crop, only not rotated" in text
    assert "--crop {chip,box}" in text and "box: the detector box squared" in text


def test_cli_refuses_an_unknown_crop(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["embed", "ds", "--crop", "square"])
    error = capsys.readouterr().err
    assert "invalid choice: 'square'" in error and "chip" in error and "box" in error
