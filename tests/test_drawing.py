"""Annotated photos: boxes and name tags readable and inside the image at any photo size."""

from __future__ import annotations

import numpy as np
import pytest

from core.drawing import EYE, KNOWN, UNKNOWN, Label, draw_labels, draw_points


def grey(height: int, width: int) -> np.ndarray:
    return np.full((height, width, 3), 128, np.uint8)


def changed(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    return np.any(before != after, axis=2)


def test_output_is_a_new_rgb_array_of_the_same_shape() -> None:
    image = grey(120, 160)
    out = draw_labels(image, [Label((40, 50, 40, 40), "amy 91%")])
    assert out.shape == image.shape and out.dtype == np.uint8
    assert (image == 128).all(), "the input must not be drawn on"
    assert changed(image, out).any()


def test_outline_in_the_label_colour_and_inside_left_alone() -> None:
    image = grey(200, 200)
    x, y, w, h = 60, 80, 80, 80
    out = draw_labels(image, [Label((x, y, w, h), "unknown", UNKNOWN)])
    assert tuple(out[y + h // 2, x]) == UNKNOWN  # left edge of the box
    assert tuple(out[y + h, x + w // 2]) == UNKNOWN  # bottom edge
    assert tuple(out[y + h // 2, x + w]) == UNKNOWN  # right edge
    assert (out[y + 10:y + h - 10, x + 10:x + w - 10] == 128).all(), "the face itself stays visible"
    assert changed(image, out)[:y].any(), "the tag goes above a box with room above it"


def test_tag_of_a_face_touching_the_top_edge_is_drawn_inside_the_image() -> None:
    image = grey(200, 300)
    out = draw_labels(image, [Label((100, 0, 80, 90), "jerry_seinfeld 97%")])
    corner = out[2:12, 102:170]  # just inside the box's top: the filled tag is there, not above the photo
    assert changed(image[2:12, 102:170], corner).mean() > 0.95
    assert np.all(corner == np.array(KNOWN, np.uint8), axis=2).mean() > 0.4
    assert np.all(out[3:12, 103:180] > 240, axis=2).any(), "white text on the tag"
    assert (out[100:, :] == 128).all(), "nothing is drawn below the box"


def test_tag_near_the_right_edge_is_shifted_back_into_the_image() -> None:
    image = grey(120, 200)
    out = draw_labels(image, [Label((170, 60, 29, 40), "a_very_long_person_name 55%")])
    tag = np.all(out == np.array(KNOWN, np.uint8), axis=2)
    assert tag[:60, :150].any(), "the tag must move left instead of being cut off"


@pytest.mark.parametrize(("height", "width"), [(20, 20), (3000, 4000), (1, 1)])
def test_tiny_and_huge_photos(height: int, width: int) -> None:
    image = grey(height, width)
    box = (width // 4, height // 4, max(1, width // 2), max(1, height // 2))
    out = draw_labels(image, [Label(box, "madonna 88%"), Label(box, "unknown", UNKNOWN)])
    assert out.shape == image.shape and changed(image, out).any()


def test_line_width_grows_with_the_photo() -> None:
    small = draw_labels(grey(100, 100), [Label((30, 40, 40, 40), "x")])
    large = draw_labels(grey(3000, 3000), [Label((900, 1200, 1200, 1200), "x")])
    small_line = np.all(small[40 + 20, 25:45] == np.array(KNOWN, np.uint8), axis=1).sum()
    large_line = np.all(large[1200 + 600, 880:940] == np.array(KNOWN, np.uint8), axis=1).sum()
    assert large_line > small_line


def test_no_labels_returns_an_unchanged_copy() -> None:
    image = grey(30, 40)
    out = draw_labels(image, [])
    assert (out == image).all() and out is not image


def test_greyscale_input_becomes_rgb() -> None:
    out = draw_labels(np.full((50, 60), 90, np.uint8), [Label((10, 10, 20, 20), "a")])
    assert out.shape == (50, 60, 3)


def test_draw_points_marks_each_point_and_joins_them() -> None:
    image = grey(150, 300)
    eyes = [(60.0, 70.0), (240.0, 70.0)]
    dots = draw_points(image, eyes)
    assert dots.shape == image.shape and (image == 128).all()
    for px, py in eyes:
        assert tuple(dots[int(py), int(px)]) == EYE
    assert tuple(dots[70, 150]) == (128, 128, 128), "no line unless asked"
    joined = draw_points(image, eyes, colour=(255, 0, 0), line=True)
    assert tuple(joined[70, 150]) == (255, 0, 0)


def test_draw_points_off_the_image_and_empty_do_not_crash() -> None:
    image = grey(40, 40)
    assert (draw_points(image, []) == image).all()
    out = draw_points(image, [(-10.0, -10.0), (100.0, 5.0)], line=True)
    assert out.shape == image.shape
