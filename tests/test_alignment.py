"""Alignment: the eye-angle maths, the square crop with margin, the unrotated fallbacks and the kept steps."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw

from core.images import ImageError
from core.pipeline import alignment
from core.pipeline.alignment import MAX_EYE_ANGLE, align_face, eye_angle, rotation_matrix, transform_point
from core.pipeline.detection.base import Face
from tests.conftest import noise_image

RED, BLUE = (255, 0, 0), (0, 0, 255)


def test_eye_angle_on_known_points() -> None:
    assert eye_angle((10, 10), (20, 20)) == pytest.approx(45.0)
    assert eye_angle((10, 10), (20, 10)) == pytest.approx(0.0)
    assert eye_angle((0, 10), (10, 0)) == pytest.approx(-45.0)
    assert eye_angle((0, 0), (10, 10 * math.tan(math.radians(15)))) == pytest.approx(15.0)


def test_rotation_matrix_levels_known_eyes_about_their_midpoint() -> None:
    matrix = rotation_matrix((10, 10), (20, 20))
    left, right = transform_point(matrix, (10, 10)), transform_point(matrix, (20, 20))
    assert left[1] == pytest.approx(right[1], abs=1e-6)
    assert left[0] < right[0]
    assert transform_point(matrix, (15, 15)) == pytest.approx((15, 15))
    assert math.dist(left, right) == pytest.approx(math.dist((10, 10), (20, 20)))


coordinate = st.floats(min_value=-2000, max_value=2000, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(coordinate, coordinate, st.floats(1, 500), st.floats(-80, 80))
def test_rotation_matrix_levels_any_eye_pair(x: float, y: float, distance: float, degrees: float) -> None:
    right_eye = (x + distance * math.cos(math.radians(degrees)), y + distance * math.sin(math.radians(degrees)))
    matrix = rotation_matrix((x, y), right_eye)
    left, right = transform_point(matrix, (x, y)), transform_point(matrix, right_eye)
    assert left[1] == pytest.approx(right[1], abs=1e-6)
    assert right[0] - left[0] == pytest.approx(distance, rel=1e-9, abs=1e-9)


def _two_dots(size: int = 200, left: tuple[int, int] = (70, 90), right: tuple[int, int] = (130, 90)) -> np.ndarray:
    """A grey canvas with a red 'left eye' and a blue 'right eye' (easy to find again after a warp)."""
    canvas = Image.new("RGB", (size, size), (128, 128, 128))
    draw = ImageDraw.Draw(canvas)
    for (cx, cy), colour in ((left, RED), (right, BLUE)):
        draw.ellipse((cx - 6, cy - 6, cx + 6, cy + 6), fill=colour)
    return np.asarray(canvas)


def _centroid(image: np.ndarray, colour: tuple[int, int, int]) -> tuple[float, float]:
    mask = np.all(np.abs(image.astype(int) - colour) < 60, axis=2)
    ys, xs = np.nonzero(mask)
    assert len(xs) > 10, f"colour {colour} not found"
    return float(xs.mean()), float(ys.mean())


@pytest.mark.parametrize("tilt", [15, -15, 30])
def test_a_tilted_face_is_levelled_and_the_sign_follows_the_tilt(tilt: int) -> None:
    # PIL rotates anticlockwise on screen for a positive angle, which lifts the image-right eye: angle < 0.
    image = np.asarray(Image.fromarray(_two_dots()).rotate(tilt, resample=Image.Resampling.BILINEAR,
                                                            fillcolor=(128, 128, 128)))
    left, right = _centroid(image, RED), _centroid(image, BLUE)
    assert eye_angle(left, right) == pytest.approx(-tilt, abs=1.0)

    result = align_face(image, Face((50, 50, 100, 100), 1.0, left, right), size=120, margin=0.1)
    assert result.aligned and result.reason == ""
    assert result.angle == pytest.approx(-tilt, abs=1.0)
    crop_left, crop_right = _centroid(result.crop, RED), _centroid(result.crop, BLUE)
    assert crop_left[1] == pytest.approx(crop_right[1], abs=1.0)
    assert crop_left[0] < crop_right[0]


@pytest.mark.parametrize("size", [16, 100, 224, 500])
@pytest.mark.parametrize("eyes", [None, ((40, 40), (70, 45))])
def test_output_is_a_square_uint8_rgb_crop_of_the_requested_size(size: int, eyes) -> None:
    face = Face((20, 20, 80, 90), 1.0, *(eyes or (None, None)))
    result = align_face(noise_image(150, 130), face, size=size)
    assert result.crop.shape == (size, size, 3)
    assert result.crop.dtype == np.uint8
    assert result.aligned is (eyes is not None)


def test_without_eyes_the_crop_is_the_exact_unrotated_box() -> None:
    image = noise_image(120, 100, seed=3)
    result = align_face(image, Face((10, 20, 40, 40), 0.9), size=40, margin=0.0)
    assert not result.aligned and result.angle == 0.0 and result.eyes is None
    assert "no eye" in result.reason
    assert result.crop_box == (10, 20, 40, 40)
    np.testing.assert_array_equal(result.crop, image[20:60, 10:50])


def test_rotate_off_keeps_the_crop_unrotated_but_reports_the_eyes() -> None:
    image = noise_image(120, 100, seed=4)
    face = Face((10, 20, 40, 40), 0.9, left_eye=(20, 30), right_eye=(40, 40))
    result = align_face(image, face, size=40, margin=0.0, rotate=False)
    assert not result.aligned and result.angle == 0.0 and result.reason == alignment.ROTATION_OFF
    assert result.eyes == ((20, 30), (40, 40))
    np.testing.assert_array_equal(result.crop, image[20:60, 10:50])


def test_eyes_given_right_first_are_put_in_image_order() -> None:
    result = align_face(noise_image(100, 100), Face((10, 10, 60, 60), 1.0, (60, 35), (30, 30)), size=32)
    assert result.eyes == ((30, 30), (60, 35))
    assert result.angle == pytest.approx(eye_angle((30, 30), (60, 35)))


@pytest.mark.parametrize("left, right, words", [
    ((30, 20), (40, 60), "beyond"),  # ~76°: a mis-found pair
    ((40, 60), (45, 20), "beyond"),  # ~-83°
    ((30, 30), (30.2, 30.1), "coincide"),
    ((30, 30), (float("nan"), 30), "finite"),
])
def test_implausible_eye_pairs_fall_back_to_an_unrotated_crop(left, right, words) -> None:
    image = noise_image(100, 100, seed=5)
    result = align_face(image, Face((10, 10, 50, 50), 1.0, left, right), size=50, margin=0.0)
    assert not result.aligned and result.angle == 0.0 and words in result.reason
    np.testing.assert_array_equal(result.crop, image[10:60, 10:60])


def test_the_angle_limit_is_45_degrees() -> None:
    assert MAX_EYE_ANGLE == 45.0
    just_inside = align_face(noise_image(100, 100), Face((10, 10, 50, 50), 1.0, (20, 20), (40, 39)), size=20)
    assert just_inside.aligned


@pytest.mark.parametrize("box", [(0, 0, 30, 30), (70, 70, 30, 30), (0, 40, 100, 60), (95, 0, 5, 100)])
def test_boxes_touching_the_border_are_padded_black_without_crashing(box) -> None:
    image = np.full((100, 100, 3), 200, np.uint8)
    face = Face(box, 1.0, (box[0] + 2.0, box[1] + 3.0), (box[0] + box[2] - 2.0, box[1] + 4.0))
    for rotate in (True, False):
        result = align_face(image, face, size=64, margin=0.5, rotate=rotate)
        assert result.crop.shape == (64, 64, 3)
        assert result.crop.min() == 0  # the part of the square outside the photo is black
        assert result.crop.max() == 200


def test_the_margin_widens_the_square_around_the_box() -> None:
    result = align_face(noise_image(200, 200), Face((50, 60, 40, 80), 1.0), size=10, margin=0.25)
    assert result.crop_box == (10, 40, 120, 120)  # longer side 80 × (1 + 2 × 0.25), centred on (70, 100)


def test_keep_steps_keeps_the_rotated_image_and_what_to_draw_on_it() -> None:
    image = _two_dots(left=(70, 80), right=(130, 100))
    face = Face((50, 50, 100, 100), 1.0, (70, 80), (130, 100))
    plain = align_face(image, face, size=64)
    assert plain.rotated is None
    kept = align_face(image, face, size=64, keep_steps=True)
    assert kept.rotated is not None and kept.rotated.shape == image.shape and kept.rotated.dtype == np.uint8
    np.testing.assert_array_equal(kept.crop, plain.crop)
    (lx, ly), (rx, ry) = kept.rotated_eyes
    assert ly == pytest.approx(ry, abs=1e-6)
    # the dots really are level in the rotated image, where the kept eye points say
    assert _centroid(kept.rotated, RED) == pytest.approx((lx, ly), abs=1.0)
    assert _centroid(kept.rotated, BLUE) == pytest.approx((rx, ry), abs=1.0)
    assert kept.matrix.shape == (2, 3)
    x, y, side, _ = kept.crop_box
    assert x < lx < rx < x + side and y < ly < y + side

    unrotated = align_face(image, Face((50, 50, 100, 100), 1.0), size=64, keep_steps=True)
    assert unrotated.rotated is image and unrotated.rotated_eyes is None


def test_huge_squares_are_cut_at_reduced_scale(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(alignment, "MAX_CROP_SIDE", 50)
    image = _two_dots()
    result = align_face(image, Face((40, 40, 120, 120), 1.0, (70, 90), (130, 90)), size=100, margin=0.0)
    assert result.crop.shape == (100, 100, 3)
    assert _centroid(result.crop, RED)[0] == pytest.approx(25, abs=3)  # (70 - 40) / 120 × 100


@pytest.mark.parametrize("kwargs, message", [
    ({"size": 0}, "size"),
    ({"size": 10.5}, "size"),
    ({"size": 32, "margin": -0.1}, "margin"),
    ({"size": 32, "margin": float("nan")}, "margin"),
])
def test_bad_settings_are_refused_with_a_message(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        align_face(noise_image(), Face((1, 1, 20, 20), 1.0), **kwargs)


def test_bad_images_and_boxes_are_refused_with_a_message() -> None:
    with pytest.raises(ImageError, match="RGB uint8"):
        align_face(np.zeros((50, 50), np.uint8), Face((1, 1, 20, 20), 1.0), size=32)
    with pytest.raises(ImageError, match="RGB uint8"):
        align_face(np.zeros((50, 50, 3), np.float32), Face((1, 1, 20, 20), 1.0), size=32)
    with pytest.raises(ValueError, match="empty"):
        align_face(noise_image(), Face((5, 5, 0, 10), 1.0), size=32)
