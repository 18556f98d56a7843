"""dlib's HOG + linear SVM frontal-face detector, with eyes from the 5-point shape predictor."""

from __future__ import annotations

import threading

import numpy as np

from core.pipeline import _dlib_pool
from core.pipeline.detection import DETECTORS
from core.pipeline.detection._dlib_landmarks import checked_upsample, dlib_unavailable_reason, face_from_corners, face_from_rect
from core.pipeline.detection.base import Detector, Face
from core.registry import Entry

WORKERS_FROM_PHOTOS = 4  # fewer photos (Verify's two) are detected in-process: no worker has to start for them


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

    def _detect_batch(self, images: list[np.ndarray]) -> list[list[Face]]:
        """Several photos in dlib's worker processes, one per core: dlib holds the GIL for a whole detection, so
        threads would take turns (and one detector shared by threads crashed). Eyes are fitted here (~1 ms a face)."""
        if len(images) < WORKERS_FROM_PHOTOS:
            return super()._detect_batch(images)

        def in_workers(pool: _dlib_pool.WorkerPool) -> list[list[Face]]:
            found = pool.detect(images, self.upsample)
            return [[face_from_corners(image, tuple(row[:4]), row[4]) for row in rows]  # type: ignore[arg-type]
                    for image, rows in zip(images, found)]

        return _dlib_pool.in_workers(("hog",), in_workers, lambda: super(DlibHogDetector, self)._detect_batch(images))


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
