"""dlib's HOG + linear SVM frontal-face detector, with eyes from the 5-point shape predictor."""

from __future__ import annotations

import threading

import numpy as np

from core.pipeline.detection import DETECTORS
from core.pipeline.detection._dlib_landmarks import checked_upsample, dlib_unavailable_reason, face_from_rect
from core.pipeline.detection.base import Detector, Face
from core.registry import Entry


class DlibHogDetector(Detector):
    """Fast on a CPU and rarely fooled, but misses faces turned away, tilted or under about 40 px (upsample 1)."""

    name = "dlib-hog"
    seconds_per_photo = 0.2

    def __init__(self, upsample: int = 1) -> None:
        upsample = checked_upsample(self.name, upsample, 3)
        super().__init__(upsample=upsample)
        import dlib

        self.upsample = upsample
        self._detector = dlib.get_frontal_face_detector()
        self._lock = threading.Lock()

    def _detect(self, image: np.ndarray) -> list[Face]:
        pixels = np.ascontiguousarray(image)
        with self._lock:
            rects, scores, _ = self._detector.run(pixels, self.upsample)
        return [face_from_rect(pixels, rect, score) for rect, score in zip(rects, scores)]


DETECTORS.register(Entry(
    name="dlib-hog",
    label="dlib HOG",
    factory=DlibHogDetector,
    description=(
        "dlib's classic HOG detector: fast on a CPU (tens of ms per photo) with few false faces, but it "
        "only finds roughly frontal faces of at least ~40 px (setting upsample: 0 is faster and needs "
        "~80 px faces, 2 finds ~20 px faces but is 4× slower). Eyes come from dlib's 5-point landmarks."
    ),
    available=dlib_unavailable_reason,
))
