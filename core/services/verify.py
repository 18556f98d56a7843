"""The verify service: two photos → faces → embeddings → a verdict, each step drawable.

The Verify page and ``python -m core verify`` both go through here, so a photo gives the
same numbers in the browser and on the command line. The numeric work lives in
:mod:`core.compare`; this module chooses what to feed it: which face, and which thresholds
(a stored calibration, else the backbone's declared defaults).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.compare.calibration import Calibration
from core.compare.verification import Verdict, verify
from core.drawing import EYE, Label, draw_labels, draw_points
from core.images import ImageError, downscale, load_image
from core.pipeline.alignment import AlignedFace
from core.pipeline.detection.base import Face
from core.pipeline.embeddings import Pipeline

DISPLAY_SIDE = 640  # step images are cut around the face and shrunk to at most this many pixels a side


FACE_CONTEXT = 0.6  # step images show the face box plus this fraction of its size on every side


class NoFaceError(ImageError):
    """A photo in which the detector found no face."""


def no_face_message(name: str, detector: str) -> str:
    return (f"{name}: no face found by the {detector} detector; try another detector (mtcnn finds the most faces) "
            "or a sharper, more frontal photo.")


@dataclass
class FaceView:
    """One face of a photo with its embedding and, when steps were kept, the pictures of each step."""

    face: Face
    aligned: AlignedFace
    embedding: np.ndarray
    detected: np.ndarray | None = None  # step 1: the face box with eyes / landmarks, around the face
    eye_line: np.ndarray | None = None  # step 2: the rotated image, eyes joined by a level line, the cut square
    network_input: np.ndarray | None = None  # step 4: backbone.preprocess output rescaled to uint8

    def to_dict(self, index: int) -> dict[str, Any]:
        """JSON-ready summary (for the CLI)."""
        return {"index": index, "box": list(self.face.box), "score": round(self.face.score, 4),
                "aligned": self.aligned.aligned, "angle": round(float(self.aligned.angle), 2)}


@dataclass
class PhotoAnalysis:
    """Every face found in one photo, largest first; ``overview`` has their boxes numbered 1, 2, …"""

    name: str
    size: tuple[int, int]  # width, height
    faces: list[FaceView]
    overview: np.ndarray | None = None

    def face(self, index: int) -> FaceView:
        """Face ``index`` (0 = the largest), or a ValueError saying how many there are."""
        if not 0 <= index < len(self.faces):
            raise ValueError(f"{self.name}: there is no face {index}; the photo has {len(self.faces)} "
                             f"(indices 0 to {len(self.faces) - 1}, largest first).")
        return self.faces[index]


def _around(box: tuple[int, int, int, int], width: int, height: int) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the face box widened by FACE_CONTEXT, clipped to the image."""
    x, y, w, h = box
    pad = int(max(w, h) * FACE_CONTEXT)
    return max(0, x - pad), max(0, y - pad), min(width, x + w + pad), min(height, y + h + pad)


def _cut(image: np.ndarray, region: tuple[int, int, int, int]) -> np.ndarray:
    left, top, right, bottom = region
    part = image[top:bottom, left:right]
    return downscale(np.ascontiguousarray(part), DISPLAY_SIDE)[0] if part.size else image[:1, :1]


def display_input(network_input: np.ndarray) -> np.ndarray:
    """A network input (any float range, e.g. mean-subtracted) stretched to 0–255 so it can be shown."""
    values = np.asarray(network_input, dtype=np.float64)
    low, high = values.min(), values.max()
    scale = 255.0 / (high - low) if high > low else 0.0
    return np.rint((values - low) * scale).astype(np.uint8)


def _steps(image: np.ndarray, face: Face, aligned: AlignedFace) -> tuple[np.ndarray, np.ndarray]:
    """Pictures of steps 1 and 2, cut around the face so a small face in a big photo stays visible."""
    height, width = image.shape[:2]
    points = list(face.landmarks.values()) or [p for p in (face.left_eye, face.right_eye) if p is not None]
    detected = draw_labels(image, [Label(face.box, f"{face.score:.2f}")])
    detected = draw_points(detected, points) if points else detected
    rotated = aligned.rotated if aligned.rotated is not None else image
    side_box = aligned.crop_box or face.box
    eye_line = draw_labels(rotated, [Label(side_box, f"{aligned.angle:+.1f}°", EYE)])
    if aligned.rotated_eyes is not None:
        eye_line = draw_points(eye_line, list(aligned.rotated_eyes), line=True)
    return _cut(detected, _around(face.box, width, height)), _cut(eye_line, _around(side_box, width, height))


def analyse_photo(pipeline: Pipeline, data: bytes, name: str, with_steps: bool = False) -> PhotoAnalysis:
    """Detect, align and embed every face of one photo; ``with_steps`` also draws each pipeline step.

    Raises ImageError (prefixed with ``name``) for an unreadable file and NoFaceError when no face is found.
    """
    return analyse_photos(pipeline, [(data, name)], with_steps)[0]


def analyse_photos(pipeline: Pipeline, photos: Sequence[tuple[bytes, str]], with_steps: bool = False) -> list[PhotoAnalysis]:
    """:func:`analyse_photo` for several photos at once: one detector batch and one backbone call for all faces.

    Two 640×480 photos go through MTCNN together and their four dlib chips (face and mirror
    image each) through the descriptor workers together. The first unusable photo raises.
    """
    images = []
    for data, name in photos:
        try:
            images.append(load_image(data))
        except ImageError as exc:
            raise ImageError(f"{name}: {exc}") from exc
    found_per_photo = pipeline.faces_many(images, keep_steps=with_steps)
    for found, (_, name) in zip(found_per_photo, photos):
        if not found:
            raise NoFaceError(no_face_message(name, pipeline.detector.name))
    crops = np.stack([aligned.crop for found in found_per_photo for _, aligned in found])
    embeddings = np.asarray(pipeline.backbone.embed(crops), dtype=np.float32)
    inputs = pipeline.backbone.preprocess(crops) if with_steps else None
    analyses, start = [], 0
    for image, found, (_, name) in zip(images, found_per_photo, photos):
        views = [FaceView(face, aligned, embeddings[start + i]) for i, (face, aligned) in enumerate(found)]
        overview = None
        if with_steps:
            for view, network_input in zip(views, inputs[start:start + len(found)]):  # type: ignore[index]
                view.detected, view.eye_line = _steps(image, view.face, view.aligned)
                view.network_input = display_input(network_input)
                view.aligned.rotated = None  # the whole rotated photo is no longer needed; keep cached results small
            labels = [Label(view.face.box, str(i + 1)) for i, view in enumerate(views)]
            overview = downscale(draw_labels(image, labels), DISPLAY_SIDE * 2)[0]
        analyses.append(PhotoAnalysis(name, (image.shape[1], image.shape[0]), views, overview))
        start += len(found)
    return analyses


def compare(pipeline: Pipeline, first: FaceView, second: FaceView, calibration: Calibration | None = None) -> Verdict:
    """The verdict on two faces, with a calibration's thresholds or else the backbone's defaults."""
    metric = calibration.metric if calibration is not None else pipeline.backbone.decision_metric
    return verify(first.embedding, second.embedding, calibration=calibration,
                  defaults=pipeline.backbone.default_thresholds, metric=metric)
