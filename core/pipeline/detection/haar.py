"""OpenCV's Viola-Jones Haar cascades: a frontal-face cascade, then an eye cascade inside each face."""

from __future__ import annotations

import importlib.util
import itertools
import math
import threading
from typing import Any

import numpy as np

from core.pipeline.detection import DETECTORS
from core.pipeline.detection.base import Detector, Face, Point
from core.registry import Entry

FACE_CASCADE = "haarcascade_frontalface_default.xml"
# Tried in order: the plain eye cascade, then the one trained with glasses for faces where it found no pair.
EYE_CASCADES = ("haarcascade_eye.xml", "haarcascade_eye_tree_eyeglasses.xml")

# Eyes are searched in this top fraction of the face box (Haar face boxes put the eyes at ~35-45 %).
EYE_SEARCH_TOP = 0.6
# Limits on a plausible pair, as fractions of the face box width or as ratios.
EYE_MAX_SIZE_RATIO = 1.6
EYE_MIN_SEPARATION, EYE_MAX_SEPARATION = 0.2, 0.7
EYE_MAX_DROP = 0.4  # |dy| / separation: about 22 degrees of head tilt, beyond what the face cascade finds


class HaarDetector(Detector):
    """Classic, fast and dependency-light, but it misses turned faces, finds both eyes in under half of
    real photos and reports false faces in textured backgrounds."""

    name = "haar"
    seconds_per_photo = 0.05

    def __init__(self, scale_factor: float = 1.1, min_neighbors: int = 5, min_size: int = 30) -> None:
        if not scale_factor > 1.0:
            raise ValueError(f"haar scale_factor must be above 1.0 (the pyramid step), got {scale_factor}.")
        if int(min_neighbors) < 0:
            raise ValueError(f"haar min_neighbors must be 0 or more, got {min_neighbors}.")
        if int(min_size) < 1:
            raise ValueError(f"haar min_size must be at least 1 pixel, got {min_size}.")
        super().__init__(scale_factor=float(scale_factor), min_neighbors=int(min_neighbors), min_size=int(min_size))
        import cv2

        self._cv2 = cv2
        self._faces = _cascade(cv2, FACE_CASCADE)
        self._eyes = [_cascade(cv2, name) for name in EYE_CASCADES]
        self._lock = threading.Lock()  # CascadeClassifier is not guaranteed thread-safe

    def _detect(self, image: np.ndarray) -> list[Face]:
        cv2 = self._cv2
        # No histogram equalisation: on five_celebrity it cost 4 faces and added false ones.
        grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        size = self.settings["min_size"]
        with self._lock:
            boxes, neighbours = self._faces.detectMultiScale2(
                grey, scaleFactor=self.settings["scale_factor"], minNeighbors=self.settings["min_neighbors"],
                minSize=(size, size))
        faces = []
        for (x, y, w, h), score in zip(np.asarray(boxes).reshape(-1, 4), np.asarray(neighbours).reshape(-1)):
            box = (int(x), int(y), int(w), int(h))  # score: how many neighbouring windows agreed
            eyes = self._find_eyes(grey, box)
            landmarks = {"left_eye": eyes[0], "right_eye": eyes[1]} if eyes else {}
            faces.append(Face(box=box, score=float(score), left_eye=eyes[0] if eyes else None,
                              right_eye=eyes[1] if eyes else None, landmarks=landmarks))
        return faces

    def _find_eyes(self, grey: np.ndarray, box: tuple[int, int, int, int]) -> tuple[Point, Point] | None:
        """The most plausible (image-left, image-right) eye centres inside the face, or None."""
        x, y, w, h = box
        region = grey[y:y + max(1, int(h * EYE_SEARCH_TOP)), x:x + w]
        smallest, largest = max(5, w // 10), max(6, w // 3)
        for cascade in self._eyes:
            with self._lock:
                found = cascade.detectMultiScale(region, scaleFactor=1.1, minNeighbors=3,
                                                 minSize=(smallest, smallest), maxSize=(largest, largest))
            candidates = [(float(x + ex + ew / 2), float(y + ey + eh / 2), float(ew))
                          for ex, ey, ew, eh in np.asarray(found).reshape(-1, 4)]
            pair = best_eye_pair(candidates, box)
            if pair:
                return pair
        return None


def best_eye_pair(candidates: list[tuple[float, float, float]],
                  box: tuple[int, int, int, int]) -> tuple[Point, Point] | None:
    """Pick (image-left, image-right) eye centres from candidate (cx, cy, size) detections, or None.

    A plausible pair lies in the upper half of the face box, one eye each side of its centre line, with
    similar sizes, a separation of 20-70 % of the box width and a small vertical offset; among those the
    pair with the most similar sizes and most level line wins.
    """
    x, y, w, h = box
    centre_x, middle_y = x + w / 2, y + h / 2
    best: tuple[float, tuple[Point, Point]] | None = None
    for a, b in itertools.combinations(candidates, 2):
        left, right = (a, b) if a[0] <= b[0] else (b, a)
        separation = right[0] - left[0]
        if not (left[0] < centre_x < right[0] and left[1] < middle_y and right[1] < middle_y):
            continue
        if not EYE_MIN_SEPARATION * w <= separation <= EYE_MAX_SEPARATION * w:
            continue
        size_ratio = max(left[2], right[2]) / min(left[2], right[2])
        drop = abs(right[1] - left[1]) / separation
        if size_ratio > EYE_MAX_SIZE_RATIO or drop > EYE_MAX_DROP:
            continue
        cost = math.log(size_ratio) + drop
        if best is None or cost < best[0]:
            best = (cost, ((left[0], left[1]), (right[0], right[1])))
    return best[1] if best else None


def _cascade(cv2: Any, name: str) -> Any:
    folder = getattr(getattr(cv2, "data", None), "haarcascades", "")
    classifier = cv2.CascadeClassifier(folder + name)
    if classifier.empty():
        raise RuntimeError(f"OpenCV's Haar cascade {name} could not be loaded (looked in '{folder}').")
    return classifier


def _unavailable() -> str | None:
    return None if importlib.util.find_spec("cv2") else "the opencv-python-headless package is not installed."


DETECTORS.register(Entry(
    name="haar",
    label="OpenCV Haar cascade",
    factory=HaarDetector,
    description=(
        "OpenCV's classic Viola-Jones cascades: fast and needs no deep-learning library, but it only sees "
        "roughly frontal faces (a face in ~93% of the five_celebrity photos), finds both eyes in fewer than half "
        "of them (~45-48%), and reports false faces in busy backgrounds. Its score is the number of overlapping "
        "detections merged into the box. Settings: scale_factor, min_neighbors, min_size (px)."
    ),
    available=_unavailable,
))
