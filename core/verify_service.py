"""The Verify feature end to end: photos → faces → embeddings → verdict, calibration and 1:N search.

The Verify page and the ``verify``/``calibrate`` commands both go through here, so a photo
gives the same numbers in the browser and on the command line. The numeric work lives in
``core.verification`` and ``core.calibration``; this module only chooses what to feed
them: which face, which thresholds (a stored calibration, else per-backbone defaults)
and which dataset embeddings. Plain Python: no Streamlit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.alignment import AlignedFace
from core.calibration import Calibration, calibrate, list_calibrations, load_calibration, save_calibration
from core.detection.base import Face
from core.drawing import EYE, Label, draw_labels, draw_points
from core.embeddings import Pipeline, Progress, embed_dataset
from core.images import ImageError, downscale, load_image
from core.verification import DLIB_EUCLIDEAN_THRESHOLD, Verdict, nearest, project_2d, verify

# Uncalibrated defaults per backbone: the deciding metric and its thresholds. dlib documents 0.6
# euclidean; its descriptors are about 1.5 long, so that is about 0.4 between unit vectors and
# 0.4²/2 = 0.08 cosine (calibration on five_celebrity_faces lands near all three). VGG-Face's fc8
# vectors are usually compared by cosine at about 0.4, i.e. √0.8 ≈ 0.89 between unit vectors.
# Any other backbone decides on cosine with verification's neutral thresholds.
BACKBONE_DEFAULTS: dict[str, tuple[str, dict[str, float]]] = {
    "dlib-resnet": ("euclidean", {"euclidean": DLIB_EUCLIDEAN_THRESHOLD, "euclidean_l2": 0.4, "cosine": 0.08}),
    "vggface16": ("cosine", {"cosine": 0.4, "euclidean_l2": 0.89}),
}
FALLBACK_METRIC = "cosine"
DISPLAY_SIDE = 640  # step images are cut around the face and shrunk to at most this many pixels a side
FACE_CONTEXT = 0.6  # step images show the face box plus this fraction of its size on every side


class NoFaceError(ImageError):
    """A photo in which the detector found no face."""


def no_face_message(name: str, detector: str) -> str:
    return (f"{name}: no face found by the {detector} detector; try another detector (mtcnn finds the most faces) "
            "or a sharper, more frontal photo.")


def decision_metric(pipeline: Pipeline) -> str:
    """The metric verification decides on for this pipeline's backbone."""
    return BACKBONE_DEFAULTS.get(pipeline.backbone.name, (FALLBACK_METRIC, {}))[0]


def default_thresholds(pipeline: Pipeline) -> dict[str, float]:
    """The backbone's documented thresholds (verification tops them up with neutral ones)."""
    return dict(BACKBONE_DEFAULTS.get(pipeline.backbone.name, (FALLBACK_METRIC, {}))[1])


# ---------------------------------------------------------------- one photo

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


# ---------------------------------------------------------------- calibration lookup

def calibration_context(pipeline: Pipeline, dataset_fingerprint: str) -> dict[str, Any]:
    """The key a calibration is stored under: it only holds for this dataset and this exact pipeline."""
    return {"dataset": dataset_fingerprint, "detector": pipeline.detector.cache_key(),
            "align": pipeline.align, "backbone": pipeline.backbone.cache_key()}


def dataset_fingerprint(root: Path | str) -> str:
    from core.dataset import fingerprint, scan

    return fingerprint(scan(root))


def find_calibration(pipeline: Pipeline, dataset: Path | str | None = None) -> Calibration | None:
    """The calibration to verify with: for ``dataset`` when given, else the newest one made with this pipeline.

    "This pipeline" means the same detector, alignment switch and backbone (with their settings and
    weights), whatever the dataset.
    """
    if dataset is not None:
        return load_calibration(calibration_context(pipeline, dataset_fingerprint(dataset)))
    wanted = calibration_context(pipeline, "")
    for calibration in list_calibrations():
        if all(calibration.context.get(key) == wanted[key] for key in ("detector", "align", "backbone")):
            return calibration
    return None


def compare(pipeline: Pipeline, first: FaceView, second: FaceView, calibration: Calibration | None = None) -> Verdict:
    """The verdict on two faces, with a calibration's thresholds or else the backbone's defaults."""
    metric = calibration.metric if calibration is not None else decision_metric(pipeline)
    return verify(first.embedding, second.embedding, calibration=calibration,
                  defaults=default_thresholds(pipeline), metric=metric)


# ---------------------------------------------------------------- a labelled dataset

@dataclass
class Gallery:
    """One embedding per usable photo of a dataset (all splits), for calibration, 1:N search and the map."""

    root: Path
    fingerprint: str
    embeddings: np.ndarray
    labels: list[str]
    paths: list[Path]
    no_face: list[str]
    errors: dict[str, str]

    @property
    def photos(self) -> int:
        return len(self.paths) + len(self.no_face) + len(self.errors)


def build_gallery(pipeline: Pipeline, root: Path | str, progress: Progress | None = None,
                  splits: Sequence[str] | None = None) -> Gallery:
    """Embed the labelled photos of a dataset (the on-disk embedding cache makes a second call cheap).

    Unlabelled photos are left out (they can be neither a genuine nor an impostor pair); photos with
    no face or unreadable ones are listed, never silently dropped.
    """
    from core.dataset import fingerprint, scan

    root = Path(root).resolve()
    per_split = embed_dataset(root, pipeline, splits=splits, progress=progress)
    vectors, labels, paths, no_face, errors = [], [], [], [], {}
    for split in per_split.values():
        keep = [i for i, label in enumerate(split.labels) if label is not None]
        vectors.append(split.embeddings[keep] if keep else np.zeros((0, pipeline.backbone.embedding_dim), np.float32))
        labels += [split.labels[i] for i in keep]
        paths += [root / split.paths[i] for i in keep]
        no_face += split.no_face
        errors.update(split.errors)
    embeddings = np.concatenate(vectors) if vectors else np.zeros((0, pipeline.backbone.embedding_dim), np.float32)
    return Gallery(root, fingerprint(scan(root)), embeddings, labels, paths, no_face, errors)


def calibrate_gallery(pipeline: Pipeline, gallery: Gallery, target_far: float | None = None) -> Calibration:
    """Calibrate on a gallery's genuine and impostor pairs, save it for this context and return it."""
    if len(gallery.labels) < 2:
        raise ValueError(f"{gallery.root.name}: only {len(gallery.labels)} photo(s) with a face; "
                         "calibration needs at least two photos of one person and two people.")
    calibration = calibrate(gallery.embeddings, gallery.labels, metric=decision_metric(pipeline),
                            target_far=target_far, context=calibration_context(pipeline, gallery.fingerprint))
    save_calibration(calibration)
    return calibration


@dataclass(frozen=True)
class Match:
    """One candidate in a 1:N search: a person, their closest photo and its distance."""

    person: str
    distance: float
    path: Path


def identify(gallery: Gallery, embedding: np.ndarray, metric: str, k: int = 5) -> list[Match]:
    """The ``k`` nearest people in the gallery, closest first (each person once, at their closest photo)."""
    if not gallery.labels:
        raise ValueError(f"{gallery.root.name}: no photo with a face to compare with.")
    return [Match(str(label), distance, gallery.paths[index])
            for label, distance, index in nearest(embedding, gallery.embeddings, gallery.labels, metric, k)]


def embedding_map(gallery: Gallery, extra: Sequence[np.ndarray], method: str = "pca") -> tuple[np.ndarray, np.ndarray]:
    """2-D coordinates of the gallery and of the ``extra`` embeddings (the compared faces), in one projection."""
    stacked = np.vstack([gallery.embeddings, *[np.asarray(e, np.float32)[None] for e in extra]])
    coords = project_2d(stacked, method=method)
    return coords[:len(gallery.labels)], coords[len(gallery.labels):]
