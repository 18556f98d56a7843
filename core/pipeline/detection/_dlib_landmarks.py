"""dlib's 5-point shape predictor, shared by the dlib detectors (and the dlib-resnet backbone).

The predictor marks two corners of each eye and the base of the nose. In dlib's order
points 0-1 are the outer and inner corner of the eye on the image's right, 2-3 the outer
and inner corner of the eye on the image's left, 4 the nose; eye centres are the mean of
the two corners. The model is loaded once per process and used under a lock because a
dlib predictor object is not documented as safe to call from several threads at once.
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path
from typing import Any

import numpy as np

from core.pipeline.detection.base import Face, Point, order_eyes

_lock = threading.Lock()
_predictor: Any = None


def dlib_unavailable_reason(*extra_models: str) -> str | None:
    """None when dlib, the 5-point model and the ``extra_models`` are usable, else why not.

    ``extra_models`` name face_recognition_models functions, e.g. ``"cnn_face_detector_model_location"``.
    """
    if importlib.util.find_spec("dlib") is None:
        return "the 'dlib' package is not installed (pip install dlib-bin)."
    try:
        import face_recognition_models
    except ImportError:
        return "the 'face_recognition_models' package is not installed."
    for model in ("pose_predictor_five_point_model_location", *extra_models):
        path = Path(getattr(face_recognition_models, model)())
        if not path.is_file():
            return f"the dlib model file {path.name} is missing from face_recognition_models."
    return None


def checked_upsample(detector: str, upsample: int, most: int) -> int:
    """dlib's upsample setting as an int in 0…most (each step doubles the image: time and memory ×4)."""
    if not 0 <= int(upsample) <= most:
        raise ValueError(f"{detector} upsample must be 0 to {most} (each step doubles the image), got {upsample}.")
    return int(upsample)


def _load_predictor() -> Any:
    global _predictor
    if _predictor is None:
        import dlib
        import face_recognition_models

        _predictor = dlib.shape_predictor(face_recognition_models.pose_predictor_five_point_model_location())
    return _predictor


def shape_for(image: np.ndarray, box: tuple[int, int, int, int]) -> Any:
    """dlib's raw ``full_object_detection`` (5 parts) for the face in ``box`` (x, y, width, height)."""
    import dlib

    x, y, w, h = (int(v) for v in box)
    pixels = np.ascontiguousarray(image)
    with _lock:
        return _load_predictor()(pixels, dlib.rectangle(x, y, x + w, y + h))


def five_point_landmarks(image: np.ndarray, box: tuple[int, int, int, int]) -> dict[str, Point]:
    """Eye centres (``left_eye`` = image-left) and ``nose`` for the face in ``box``, in image pixels."""
    shape = shape_for(image, box)
    points = [(float(p.x), float(p.y)) for p in shape.parts()]

    def centre(a: Point, b: Point) -> Point:
        return ((a[0] + b[0]) / 2, (a[1] + b[1]) / 2)

    left, right = order_eyes(centre(points[2], points[3]), centre(points[0], points[1]))
    return {"left_eye": left, "right_eye": right, "nose": points[4]}


def face_from_rect(image: np.ndarray, rect: Any, score: float) -> Face:
    """A :class:`Face` with 5-point eyes from a dlib rectangle found in ``image``."""
    return face_from_corners(image, (rect.left(), rect.top(), rect.right(), rect.bottom()), score)


def face_from_corners(image: np.ndarray, corners: tuple[int, int, int, int], score: float) -> Face:
    """A :class:`Face` with 5-point eyes from a dlib rectangle's inclusive corners (left, top, right, bottom)."""
    left, top, right, bottom = (int(v) for v in corners)
    box = (left, top, right - left + 1, bottom - top + 1)
    landmarks = five_point_landmarks(image, box)
    return Face(box=box, score=float(score), left_eye=landmarks["left_eye"], right_eye=landmarks["right_eye"],
                landmarks=landmarks)
