"""MTCNN (the ``mtcnn`` package): a cascade of three small CNNs giving boxes and five landmarks.

The module is not called ``mtcnn.py`` so that nobody reading ``import mtcnn`` inside this
package has to wonder whether it means the package or this module.
"""

from __future__ import annotations

import importlib.util
import threading

import numpy as np

from core.detection import DETECTORS
from core.detection.base import Detector, Face, order_eyes
from core.registry import Entry


class MtcnnDetector(Detector):
    """The suggested default: finds nearly every face, with eye landmarks for alignment, at a few hundred ms a photo."""

    name = "mtcnn"

    def __init__(self, min_confidence: float = 0.8, min_face_size: int = 20) -> None:
        if not 0.0 <= min_confidence < 1.0:
            raise ValueError(f"mtcnn min_confidence must be in [0, 1), got {min_confidence}.")
        if int(min_face_size) < 12:
            raise ValueError(f"mtcnn min_face_size must be at least 12 pixels (its smallest window), got {min_face_size}.")
        super().__init__(min_confidence=float(min_confidence), min_face_size=int(min_face_size))
        from mtcnn import MTCNN

        self._model = MTCNN()
        self._lock = threading.Lock()  # one TensorFlow model shared by every browser session

    def _detect(self, image: np.ndarray) -> list[Face]:
        with self._lock:
            found = self._model.detect_faces(
                np.ascontiguousarray(image), min_face_size=self.settings["min_face_size"],
                threshold_onet=self.settings["min_confidence"])
        return [_face(item) for item in found]


def _face(item: dict) -> Face:
    """A :class:`Face` from one of mtcnn's JSON records (box x, y, w, h; confidence; five keypoints)."""
    points = {name: (float(p[0]), float(p[1])) for name, p in item["keypoints"].items()}
    left, right = order_eyes(points["left_eye"], points["right_eye"])
    points["left_eye"], points["right_eye"] = left, right
    return Face(box=tuple(int(round(float(v))) for v in item["box"]),  # type: ignore[arg-type]
                score=float(item["confidence"]), left_eye=left, right_eye=right, landmarks=points)


def _unavailable() -> str | None:
    """Checked without importing mtcnn, which would load TensorFlow just to list the detectors."""
    for package in ("mtcnn", "tensorflow"):
        if importlib.util.find_spec(package) is None:
            return f"the '{package}' package is not installed."
    return None


DETECTORS.register(Entry(
    name="mtcnn",
    label="MTCNN",
    factory=MtcnnDetector,
    description=(
        "Multi-task cascaded CNN (the mtcnn package, TensorFlow): the suggested default — it found a face in "
        "116 of the 117 five_celebrity photos, with five landmarks (eyes, nose, mouth corners) so every face can "
        "be aligned. Slower than Haar or dlib HOG on a CPU. Settings: min_confidence (default 0.8: at 0.9 a face behind "
        "tinted glasses scoring 0.84 was lost), "
        "min_face_size (px)."
    ),
    available=_unavailable,
))
