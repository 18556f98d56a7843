"""MTCNN (the ``mtcnn`` package's networks, run by :mod:`._mtcnn_cascade`): three small CNNs giving boxes and five
landmarks.

The module is not called ``mtcnn.py`` so that nobody reading ``import mtcnn`` inside this
package has to wonder whether it means the package or this module.
"""

from __future__ import annotations

import importlib.util

import cv2
import numpy as np

from core.pipeline.detection import DETECTORS, _mtcnn_cascade
from core.pipeline.detection.base import BoxMap, Detector, Face, order_eyes
from core.registry import Entry

PYRAMID_MIN_FACE = 20  # the largest min_face_size mtcnn's pyramid handles on any image size
LANDMARKS = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")  # the order of the cascade's points


class MtcnnDetector(Detector):
    """The suggested default: finds nearly every face, with eye landmarks for alignment, at a few hundred ms a photo."""

    name = "mtcnn"
    seconds_per_photo = 0.35
    # MTCNN boxes are taller than dlib's squares and sit higher. Measured on the 498 faces that
    # both MTCNN and dlib HOG found in five_celebrity_faces and orl_att_faces (medians): dlib's
    # centre is 0.062 × height lower, its side 1.086 × width or 0.843 × height. Fitting dlib's
    # landmarks on the mapped box lowered the dlib-resnet EER on glint360k's tight crops from 3.52 %
    # to 2.92 % and left five_celebrity and ORL as they were (benchmarks/bench_verification.py).
    dlib_box_map = BoxMap(dx=0.007, dy=0.062, side_w=1.086, side_h=0.843)

    def __init__(self, min_confidence: float = 0.8, min_face_size: int = 20) -> None:
        if not 0.0 <= min_confidence < 1.0:
            raise ValueError(f"mtcnn min_confidence must be in [0, 1), got {min_confidence}.")
        if int(min_face_size) < 12:
            raise ValueError(f"mtcnn min_face_size must be at least 12 pixels (its smallest window), got {min_face_size}.")
        super().__init__(min_confidence=float(min_confidence), min_face_size=int(min_face_size))
        self._loaded = False

    @property
    def loaded(self) -> bool:
        return self._loaded

    def load(self) -> None:
        """The three networks, shared by every detector and session of the process (0.1 s once built)."""
        _mtcnn_cascade.load()
        self._loaded = True

    def _detect(self, image: np.ndarray) -> list[Face]:
        return self._detect_batch([image])[0]

    def _detect_batch(self, images: list[np.ndarray]) -> list[list[Face]]:
        """Images of one size in one cascade: the networks then run on batches (two 640×480 photos in one call).

        Only same-sized images share a call, as mtcnn 1.0 padded a mixed batch to one size, which shifts its
        pyramid and moved boxes by up to 10 pixels on five_celebrity photos: a photo's faces should not depend on
        which other photos came with it.
        """
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for index, image in enumerate(images):
            by_shape.setdefault(image.shape, []).append(index)
        found: list[list[Face]] = [[] for _ in images]
        for indices in by_shape.values():
            for index, faces in zip(indices, self._detect_same_size([images[i] for i in indices])):
                found[index] = faces
        return found

    def _detect_same_size(self, images: list[np.ndarray]) -> list[list[Face]]:
        """One cascade.

        mtcnn sizes its image pyramid as if ``min_face_size`` were 20 and, above about that, asks P-Net for
        levels smaller than its 12-pixel window. Detecting faces of at least N pixels is the same as detecting
        faces of 20 pixels in the image shrunk by 20/N, so larger minimums shrink the image instead (which is also
        faster). Boxes that run off the image stay whole, so they can be framed for dlib before clipping.
        """
        shrink = min(1.0, PYRAMID_MIN_FACE / self.settings["min_face_size"])
        if shrink < 1.0:
            images = [cv2.resize(image, (max(1, round(image.shape[1] * shrink)), max(1, round(image.shape[0] * shrink))),
                                 interpolation=cv2.INTER_AREA) for image in images]
        self.load()
        found = _mtcnn_cascade.detect(images, min(PYRAMID_MIN_FACE, self.settings["min_face_size"]),
                                      self.settings["min_confidence"])
        return [[_face(row).scaled(shrink) for row in rows] for rows in found]


def _face(row: np.ndarray) -> Face:
    """A :class:`Face` from a cascade row, in whole pixels as the mtcnn package reports them (box x, y, w, h)."""
    x1, y1, x2, y2, score = row[:5]
    xs, ys = np.round(row[5:10]).astype(int), np.round(row[10:15]).astype(int)
    points = {name: (float(x), float(y)) for name, x, y in zip(LANDMARKS, xs, ys)}
    left, right = order_eyes(points["left_eye"], points["right_eye"])
    points["left_eye"], points["right_eye"] = left, right
    box = np.round([x1, y1, x2 - x1, y2 - y1]).astype(int)
    return Face(box=tuple(int(v) for v in box), score=float(score), left_eye=left, right_eye=right,  # type: ignore[arg-type]
                landmarks=points)


def _unavailable() -> str | None:
    """Checked without importing mtcnn, whose package imports TensorFlow."""
    for package in ("mtcnn", "onnxruntime", "onnx", "joblib"):
        if importlib.util.find_spec(package) is None:
            return f"the '{package}' package is not installed."
    return None


DETECTORS.register(Entry(
    name="mtcnn",
    label="MTCNN",
    factory=MtcnnDetector,
    description=(
        "Multi-task cascaded CNN (the mtcnn package's networks, on ONNX Runtime): the suggested default — it found a face in "
        "116 of the 117 five_celebrity photos, with five landmarks (eyes, nose, mouth corners) so every face can "
        "be aligned. Slower than Haar or dlib HOG on a CPU. Settings: min_confidence (default 0.8: at 0.9 a face behind "
        "tinted glasses scoring 0.84 was lost), "
        "min_face_size (px)."
    ),
    available=_unavailable,
))
