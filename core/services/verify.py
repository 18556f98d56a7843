"""The verify service: two photos → faces → embeddings → a verdict, each step drawable.

The Verify page and ``python -m core verify`` both go through here, so a photo gives the
same numbers in the browser and on the command line. The numeric work lives in
:mod:`core.compare`; this module chooses what to feed it: which face, and which thresholds
(a stored calibration, else the backbone's declared defaults), and prepares what the page
draws (steps, per-metric checks, barcodes, the effect of alignment).
"""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.compare.barcode import BarcodeScale, barcode_matrix, barcode_scale, difference_barcode
from core.compare.calibration import Calibration
from core.compare.distances import METRICS
from core.compare.verification import Verdict, verify
from core.data.layout import FileRecord, scan
from core.drawing import EYE, KNOWN, Label, draw_labels, draw_points
from core.images import ImageError, downscale, load_image, read_file
from core.pipeline.alignment import AlignedFace
from core.pipeline.backbones.base import Backbone
from core.pipeline.detection.base import Face, Point
from core.pipeline.embeddings import Pipeline, faces_note
from core.services.finetuned import FinetunedBackbone

DISPLAY_SIDE = 640  # step images are cut around the face and shrunk to at most this many pixels a side


OTHER_FACE = (127, 140, 141)  # grey: faces found but not used, beside the used face's green
FACE_CONTEXT = 0.6  # step images show the face box plus this fraction of its size on every side


class NoFaceError(ImageError):
    """A photo in which the detector found no face."""


MOST_FACES_DETECTOR = "mtcnn"  # the detector to suggest after another one found no face: it finds the most faces
SAME_PHOTO_DISTANCE = 1e-4  # a distance this small comes from one photo met twice, not from two photos of one person


def no_face_message(name: str, detector: str) -> str:
    """Why a photo gives nothing to compare, and what to try: never the detector that just failed."""
    other = (f"another detector ({MOST_FACES_DETECTOR} finds the most faces)" if detector != MOST_FACES_DETECTOR
             else "another detector in the sidebar (each misses different faces)")
    return f"{name}: no face found by the {detector} detector; try {other} or a sharper, more frontal photo."


def same_photo(distance: float) -> bool:
    """Whether a distance of (about) zero says the two faces are one photo, e.g. a probe found in the gallery."""
    return abs(distance) <= SAME_PHOTO_DISTANCE


@dataclass
class FaceView:
    """One face of a photo with its embedding and, when steps were kept, the pictures of each step."""

    face: Face
    aligned: AlignedFace
    embedding: np.ndarray
    detected: np.ndarray | None = None  # step 1: the face box with eyes / landmarks, around the face
    eye_line: np.ndarray | None = None  # step 2: the rotated image, eyes joined by a level line, the cut square
    network_input: np.ndarray | None = None  # step 4: backbone.preprocess output, one colour map per channel

    def to_dict(self, index: int) -> dict[str, Any]:
        """JSON-ready summary (for the CLI)."""
        return {"index": index, "box": list(self.face.box), "score": round(self.face.score, 4),
                "aligned": self.aligned.aligned, "angle": round(float(self.aligned.angle), 2)}


@dataclass
class PhotoAnalysis:
    """Every face found in one photo, the chosen one first; ``overview`` has their boxes numbered 1, 2, … with face 1
    (the one used unless another is picked) marked "used" in its own colour."""

    name: str
    size: tuple[int, int]  # width, height
    faces: list[FaceView]
    overview: np.ndarray | None = None
    found: int = 0  # faces the detector found; more than ``faces`` when the face cap applied

    @property
    def note(self) -> str:
        """What the face cap left out ("49 faces found, the 20 largest were used"), or ""."""
        return faces_note(self.found, len(self.faces))

    def face(self, index: int) -> FaceView:
        """Face ``index`` (0 = the chosen one), or a ValueError saying how many there are."""
        if not 0 <= index < len(self.faces):
            raise ValueError(f"{self.name}: there is no face {index}; the photo has {len(self.faces)} "
                             f"(indices 0 to {len(self.faces) - 1}, the chosen face first).")
        return self.faces[index]


def _around(box: tuple[int, int, int, int], width: int, height: int) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the face box widened by FACE_CONTEXT, clipped to the image."""
    x, y, w, h = box
    pad = int(max(w, h) * FACE_CONTEXT)
    return max(0, x - pad), max(0, y - pad), min(width, x + w + pad), min(height, y + h + pad)


def _step(image: np.ndarray, label: Label, points: Sequence[Point], matrix: np.ndarray | None = None,
          line: bool = False) -> np.ndarray:
    """One step's picture: the region around ``label``'s box (of the image moved by the 2×3 ``matrix`` when given),
    shrunk for display, then drawn on.

    Only that region is copied and rotated: a whole copy of a 24-megapixel photo per face and step would cost
    about 100 MB each. Boxes and markers are drawn after shrinking, so they are sized for the picture shown: drawn
    on a 4000 px photo's region first, they shrank to hairlines with it.
    """
    import cv2  # lazy: OpenCV loads only where a photo is analysed step by step

    height, width = image.shape[:2]
    left, top, right, bottom = _around(label.box, width, height)
    if right <= left or bottom <= top:
        return image[:1, :1]
    if matrix is None:
        part = np.ascontiguousarray(image[top:bottom, left:right])
    else:
        shifted = np.array(matrix, dtype=np.float64)
        shifted[:, 2] -= (left, top)
        part = cv2.warpAffine(image, shifted, (right - left, bottom - top), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
    part, factor = downscale(part, DISPLAY_SIDE)
    x, y, w, h = label.box
    box = (round((x - left) * factor), round((y - top) * factor), round(w * factor), round(h * factor))
    part = draw_labels(part, [Label(box, label.text, label.colour)])
    if points:
        part = draw_points(part, [((px - left) * factor, (py - top) * factor) for px, py in points], line=line)
    return part


CHANNEL_GAP = 4  # white pixels between the channel maps of step 4
NEGATIVE, POSITIVE = np.array((33, 102, 172)), np.array((178, 24, 43))  # blue below zero, red above, white at zero


def channel_maps(network_input: np.ndarray) -> np.ndarray:
    """A network input (S, S, C) as C colour maps side by side, at the network's own size: white at zero, blue below,
    red above, on one range for all channels.

    Step 3 shows the crop as a photo; this shows the numbers the network receives instead (mean-subtracted
    values are mostly near zero), so the two steps no longer look alike.
    """
    values = np.asarray(network_input, dtype=np.float64)
    limit = float(np.abs(values).max()) or 1.0
    strength = np.clip(values / limit, -1.0, 1.0)[..., None]  # (S, S, C, 1)
    white = np.full(3, 255.0)
    colours = white + np.abs(strength) * (np.where(strength < 0, NEGATIVE, POSITIVE) - white)  # (S, S, C, 3)
    gap = np.full((values.shape[0], CHANNEL_GAP, 3), 255.0)
    panels = [part for c in range(values.shape[2]) for part in (gap, colours[:, :, c])][1:]
    return np.rint(np.concatenate(panels, axis=1)).astype(np.uint8)


def _steps(image: np.ndarray, face: Face, aligned: AlignedFace) -> tuple[np.ndarray, np.ndarray]:
    """Pictures of steps 1 and 2, cut around the face so a small face in a big photo stays visible."""
    points = list(face.landmarks.values()) or [p for p in (face.left_eye, face.right_eye) if p is not None]
    detected = _step(image, Label(face.box, f"{face.score:.2f}"), points)
    eye_line = _step(image, Label(aligned.crop_box or face.box, f"{aligned.angle:+.1f}°", EYE),
                     list(aligned.rotated_eyes or ()), aligned.matrix if aligned.aligned else None, line=True)
    return detected, eye_line


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
    counted = pipeline.faces_found(images)  # steps are drawn from the photo itself, region by region
    found_per_photo = [found for found, _ in counted]
    for found, (_, name) in zip(found_per_photo, photos):
        if not found:
            raise NoFaceError(no_face_message(name, pipeline.detector.name))
    crops = np.stack([aligned.crop for found in found_per_photo for _, aligned in found])
    embeddings = np.asarray(pipeline.backbone.embed(crops), dtype=np.float32)
    inputs = pipeline.backbone.preprocess(crops) if with_steps else None
    analyses, start = [], 0
    for image, (found, count), (_, name) in zip(images, counted, photos):
        views = [FaceView(face, aligned, embeddings[start + i]) for i, (face, aligned) in enumerate(found)]
        overview = None
        if with_steps:
            for view, network_input in zip(views, inputs[start:start + len(found)]):  # type: ignore[index]
                view.detected, view.eye_line = _steps(image, view.face, view.aligned)
                view.network_input = channel_maps(network_input)
            small, factor = downscale(image, DISPLAY_SIDE * 2)  # drawn on the small copy: no full-size copy
            overview = draw_labels(small, [overview_label(i, tuple(round(v * factor) for v in view.face.box))  # type: ignore[arg-type]
                                           for i, view in enumerate(views)])
        analyses.append(PhotoAnalysis(name, (image.shape[1], image.shape[0]), views, overview, count))
        start += len(found)
    return analyses


def overview_label(index: int, box: tuple[int, int, int, int]) -> Label:
    """Face ``index``'s tag on a photo's overview: face 1 (the one the face choice picked) "1 (used)" in green, the
    others their number in grey, so which face a verdict compares is seen at a glance."""
    return Label(box, "1 (used)", KNOWN) if index == 0 else Label(box, str(index + 1), OTHER_FACE)


def decision_metric(pipeline: Pipeline, calibration: Calibration | None = None) -> str:
    """The metric that decides (and ranks a 1:N search): the calibration's, else the backbone's declared one."""
    return calibration.metric if calibration is not None else pipeline.backbone.decision_metric


def default_thresholds_note(pipeline: Pipeline) -> str | None:
    """Where a fine-tuned run's uncalibrated thresholds come from (its own validation pairs, or neutral defaults and
    why); None for a registered backbone, whose declared defaults need no note."""
    return pipeline.backbone.thresholds_note if isinstance(pipeline.backbone, FinetunedBackbone) else None


def compare(pipeline: Pipeline, first: FaceView, second: FaceView, calibration: Calibration | None = None) -> Verdict:
    """The verdict on two faces, with a calibration's thresholds or else the backbone's defaults."""
    return verify(first.embedding, second.embedding, calibration=calibration,
                  defaults=pipeline.backbone.default_thresholds, metric=decision_metric(pipeline, calibration))


@dataclass(frozen=True)
class MetricCheck:
    """One metric of a verdict: its distance, its threshold and whether that metric alone says "same person"."""

    metric: str
    distance: float
    threshold: float

    @property
    def same(self) -> bool:
        return self.distance <= self.threshold  # a distance at the threshold is accepted, as in the verdict


def metric_checks(verdict: Verdict) -> list[MetricCheck]:
    """Every metric of a verdict in METRICS order, so one can see whether the metrics agree."""
    return [MetricCheck(metric, verdict.distances[metric], verdict.thresholds[metric]) for metric in METRICS]


def labelled_photos(root: Path | str) -> dict[str, list[FileRecord]]:
    """A dataset's labelled photos per person, people sorted by name: the photos one may pick to compare."""
    photos: dict[str, list[FileRecord]] = {}
    for record in scan(root).images:
        if record.person is not None:
            photos.setdefault(record.person, []).append(record)
    return dict(sorted(photos.items()))


def read_photo(record: FileRecord) -> tuple[str, bytes]:
    """A dataset photo as (name, bytes) for :func:`analyse_photo`; the name says whose photo it is."""
    return f"{record.person}/{record.path.name}", read_file(record.path)  # a FIFO named like a photo must not hang


AlignmentMemory = MutableMapping[tuple[Any, ...], dict[bool, float]]


def alignment_change(memory: AlignmentMemory, pipeline: Pipeline, faces: Sequence[tuple[str, FaceView]],
                     distance: float) -> float | None:
    """How much the deciding distance of these faces moved since alignment was last switched the other way.

    ``faces`` are (photo content hash, face) pairs. ``memory`` (one per user) remembers each pair's distance
    under both settings as the user switches, so the comparison costs no second embedding. None until
    the pair has been seen both ways.
    """
    key = (pipeline.detector.cache_key(), pipeline.backbone.cache_key(),
           *((digest, view.face.box) for digest, view in faces))
    seen = memory.setdefault(key, {})
    seen[pipeline.align] = distance
    other = not pipeline.align
    return None if other not in seen else distance - seen[other]


@dataclass(frozen=True)
class Barcodes:
    """Two embeddings drawn as barcodes and the barcode of their difference, on the backbone's fixed scale."""

    first: np.ndarray  # (rows, dim)
    second: np.ndarray
    difference: np.ndarray  # |first − second|
    scale: BarcodeScale  # the same for every photo of this backbone: one photo, one picture

    @property
    def unit(self) -> str:
        """What a stripe's colour stands for."""
        return "value ÷ vector length" if self.scale.normalised else "value"


def barcodes(backbone: Backbone, first: np.ndarray, second: np.ndarray) -> Barcodes:
    """The barcodes of two embeddings of ``backbone`` and of their difference, ready to draw as heatmaps."""
    scale = barcode_scale(backbone.embedding_dim, backbone.barcode_limits)
    a, b = scale.values(first), scale.values(second)
    return Barcodes(barcode_matrix(a), barcode_matrix(b), difference_barcode(a, b), scale)
