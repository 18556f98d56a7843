"""Stage 2 of the pipeline — alignment: rotate so the eyes are level, then crop and resize.

Backbones compare faces better when every face sits the same way up, so the image is
rotated about the midpoint of the eyes until the line between them is horizontal. The
face box (its centre carried through the same rotation) is then cut out as a square with
a margin and resized to the backbone's input size. The rotation, the crop and any
padding (black, where the square runs past the image) are one affine warp of just the
square, so a 12-megapixel photo is never rotated whole unless the steps are kept for display.

Rotation and framing are two separate settings. ``rotate=False`` ("align off") keeps the
backbone's own crop and only leaves out the rotation; the crop setting (:data:`CROPS`) says
which square is cut: the backbone's own (``"chip"``) or the plain detector box (``"box"``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from core.pipeline.detection.base import Face, Point, check_rgb, order_eyes

# An eye line steeper than this is far more likely a mis-detected eye pair than a tilted head.
MAX_EYE_ANGLE = 45.0
# Eye centres closer than this (px) give no usable direction.
MIN_EYE_DISTANCE = 1.0
# cv2.warpAffine refuses outputs above 32767 px a side; bigger squares are cut at reduced scale.
MAX_CROP_SIDE = 16384

# The framings a pipeline can cut faces with (its ``crop`` setting), and what each one is.
CROPS = {
    "chip": "the backbone's own crop (dlib: its 5-point chip; other backbones: the detector box squared with their "
            "margin)",
    "box": "the detector box squared with the backbone's margin (20 %), whatever the backbone",
}
DEFAULT_CROP = "chip"
# Why a face is not rotated when rotation is switched off: the crop is the one a rotated face gets.
ROTATION_OFF = "rotation off: same crop, not rotated"


def check_crop(crop: str) -> str:
    """``crop`` when it names one of :data:`CROPS`; a ValueError that lists them otherwise."""
    if crop not in CROPS:
        raise ValueError(f"unknown crop '{crop}'; choose one of: {', '.join(CROPS)}")
    return crop


def legacy_crop(align: bool) -> str:
    """The crop a run or calibration saved without a crop setting was made with.

    Until "align off" was made to mean "same crop, not rotated", switching alignment off also
    switched dlib's chip for the box crop: such records are reproduced with the box.
    """
    return DEFAULT_CROP if align else "box"


@dataclass
class AlignedFace:
    """A face crop ready for a backbone, plus what the Verify page needs to show each step."""

    crop: np.ndarray  # (size, size, 3) uint8 RGB
    aligned: bool  # False when the crop is unrotated (no eyes, rotation off, or implausible eyes: see reason)
    angle: float  # degrees the image was rotated by (0 when not aligned)
    eyes: tuple[Point, Point] | None  # (image-left, image-right) eye centres in the original image
    rotated: np.ndarray | None = None  # the whole rotated image (the original when not aligned), only with keep_steps
    reason: str = ""  # why the face was not aligned; empty when it was
    matrix: np.ndarray | None = None  # 2×3 affine map from original to rotated image (identity when not aligned)
    crop_box: tuple[int, int, int, int] | None = None  # the square cut, (x, y, side, side) in the rotated image
    rotated_eyes: tuple[Point, Point] | None = None  # eye centres in the rotated image (level when aligned)


def eye_angle(left: Point, right: Point) -> float:
    """Degrees of the line from the image-left eye to the image-right eye (positive: right eye lower).

    Image y grows downwards, so a positive angle means the face is tilted clockwise as seen on screen.
    """
    return math.degrees(math.atan2(right[1] - left[1], right[0] - left[0]))


def rotation_matrix(left: Point, right: Point) -> np.ndarray:
    """The 2×3 affine matrix that rotates the image about the eye midpoint so the eyes become level."""
    import cv2

    centre = ((left[0] + right[0]) / 2, (left[1] + right[1]) / 2)
    return cv2.getRotationMatrix2D(centre, eye_angle(left, right), 1.0)


def transform_point(matrix: np.ndarray, point: Point) -> Point:
    """Where ``point`` lands under the 2×3 affine ``matrix``."""
    x, y = matrix @ np.array([point[0], point[1], 1.0])
    return float(x), float(y)


def _rotation(eyes: tuple[Point, Point] | None, rotate: bool) -> tuple[np.ndarray | None, str]:
    """The rotation to apply, or None and the reason the face stays unrotated."""
    if not rotate:
        return None, ROTATION_OFF
    if eyes is None:
        return None, "the detector gave no eye positions"
    left, right = eyes
    if not all(math.isfinite(value) for value in (*left, *right)):
        return None, "the eye positions are not finite numbers"
    if math.dist(left, right) < MIN_EYE_DISTANCE:
        return None, "the two eye positions coincide"
    angle = eye_angle(left, right)
    if abs(angle) > MAX_EYE_ANGLE:
        return None, (f"the eye line is at {angle:.0f}°, beyond ±{MAX_EYE_ANGLE:.0f}°, "
                      "so the eyes are probably mis-detected")
    return rotation_matrix(left, right), ""


def align_face(image: np.ndarray, face: Face, size: int, margin: float = 0.2, rotate: bool = True,
               keep_steps: bool = False) -> AlignedFace:
    """Rotate the image about the eye midpoint so the eyes are level, crop the box with ``margin``, resize.

    ``margin`` is a fraction of the box's longer side added on every side of the square. Without
    usable eyes, or with ``rotate=False``, the same square (same centre, same side) is cut
    unrotated and ``aligned`` is False.
    """
    import cv2

    check_rgb(image)
    if int(size) != size or size < 1:
        raise ValueError(f"the crop size must be a whole number of pixels ≥ 1, got {size}.")
    if not (math.isfinite(margin) and margin >= 0):
        raise ValueError(f"the crop margin must be a fraction ≥ 0 of the face box, got {margin}.")
    x, y, w, h = face.box
    if w <= 0 or h <= 0:
        raise ValueError(f"the face box {face.box} is empty; it needs a positive width and height.")
    size = int(size)

    eyes = order_eyes(face.left_eye, face.right_eye) if face.has_eyes else None  # type: ignore[arg-type]
    rotation, reason = _rotation(eyes, rotate)
    matrix = rotation if rotation is not None else np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])

    centre_x, centre_y = transform_point(matrix, (x + w / 2, y + h / 2))
    side = max(1, round(max(w, h) * (1 + 2 * margin)))
    left_x, top_y = round(centre_x - side / 2), round(centre_y - side / 2)

    # One warp: original image → rotated image → the square (shifted to the origin, scaled down if huge).
    scale = min(1.0, MAX_CROP_SIDE / side)
    cut = matrix.copy()
    cut[:, 2] -= (left_x, top_y)
    cut *= scale
    cut_side = max(1, round(side * scale))
    square = cv2.warpAffine(image, cut, (cut_side, cut_side), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
    if cut_side != size:
        shrinking = cut_side > size
        square = cv2.resize(square, (size, size), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)

    rotated_image = None
    if keep_steps:
        height, width = image.shape[:2]
        rotated_image = image if rotation is None else cv2.warpAffine(
            image, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))

    aligned = rotation is not None
    return AlignedFace(
        crop=np.ascontiguousarray(square, dtype=np.uint8),
        aligned=aligned,
        angle=eye_angle(*eyes) if aligned and eyes else 0.0,
        eyes=eyes,
        rotated=rotated_image,
        reason=reason,
        matrix=matrix,
        crop_box=(left_x, top_y, side, side),
        rotated_eyes=None if eyes is None else (transform_point(matrix, eyes[0]), transform_point(matrix, eyes[1])),
    )
