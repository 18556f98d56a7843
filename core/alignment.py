"""Stage 2 of the pipeline — alignment: rotate so the eyes are level, then crop and resize.

(Stub: interface only; the implementation is in progress.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.detection.base import Face, Point


@dataclass
class AlignedFace:
    """A face crop ready for a backbone, plus what the Verify page needs to show each step."""

    crop: np.ndarray  # (size, size, 3) uint8 RGB
    aligned: bool  # False when no eye centres were known and the crop is unrotated
    angle: float  # degrees the image was rotated by (0 when not aligned)
    eyes: tuple[Point, Point] | None  # (image-left, image-right) eye centres in the original image
    rotated: np.ndarray | None = None  # the rotated image, only with keep_steps


def align_face(image: np.ndarray, face: Face, size: int, margin: float = 0.2, rotate: bool = True,
               keep_steps: bool = False) -> AlignedFace:
    """Rotate the image about the eye midpoint so the eyes are level, crop the box with ``margin``, resize."""
    raise NotImplementedError
