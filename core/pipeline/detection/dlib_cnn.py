"""dlib's CNN (MMOD) face detector, with eyes from the 5-point shape predictor."""

from __future__ import annotations

import threading

import numpy as np

from core.pipeline.detection import DETECTORS
from core.pipeline.detection._dlib_landmarks import checked_upsample, dlib_unavailable_reason, face_from_rect
from core.pipeline.detection.base import Detector, Face
from core.registry import Entry

# The network's first convolutions need at least this many pixels a side; smaller images are padded.
_MIN_SIDE = 32


class DlibCnnDetector(Detector):
    """More robust to pose and lighting than HOG, but slow on a CPU, so images are capped at 800 px."""

    name = "dlib-cnn"
    seconds_per_photo = 1.5
    max_side = 800

    def __init__(self, upsample: int = 0) -> None:
        upsample = checked_upsample(self.name, upsample, 2)
        super().__init__(upsample=upsample)
        import dlib
        import face_recognition_models

        self.upsample = upsample
        self._model = dlib.cnn_face_detection_model_v1(face_recognition_models.cnn_face_detector_model_location())
        self._lock = threading.Lock()

    def _detect(self, image: np.ndarray) -> list[Face]:
        height, width = image.shape[:2]
        # Padding on the bottom and right keeps coordinates unchanged.
        pixels = np.ascontiguousarray(np.pad(
            image, ((0, max(0, _MIN_SIDE - height)), (0, max(0, _MIN_SIDE - width)), (0, 0))))
        with self._lock:
            found = self._model(pixels, self.upsample)
        return [face_from_rect(pixels, d.rect, d.confidence) for d in found]


DETECTORS.register(Entry(
    name="dlib-cnn",
    label="dlib CNN",
    factory=DlibCnnDetector,
    description=(
        "dlib's CNN (MMOD) detector: finds faces HOG misses (turned, dim), but it is slow on a CPU — "
        "about 2 s per 640×480 photo — so photos are shrunk to 800 px first. It needs faces of about "
        "80 px (setting upsample=1 finds ~40 px faces but is about 4× slower). Eyes come from dlib's 5-point landmarks."
    ),
    available=lambda: dlib_unavailable_reason("cnn_face_detector_model_location"),
))
