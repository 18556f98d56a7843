"""The predict service: name every face in new photos with a saved run, and reject strangers.

The Predict page and ``python -m core predict`` both go through :func:`predictor_for_run`
and :class:`Predictor`; the rule for unknown faces is :mod:`core.compare.unknown`.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from core.compare.distances import pairwise_distances
from core.compare.unknown import UNKNOWN_LABEL, UnknownRule, min_confidence_for, nearest_by_person
from core.data.layout import scan
from core.drawing import KNOWN, UNKNOWN, Label, draw_labels
from core.images import downscale, encode_jpeg, is_image_name, load_image
from core.pipeline.backbones import BACKBONES
from core.pipeline.detection import DETECTORS
from core.pipeline.embeddings import Pipeline, Progress, Source
from core.runs import load_run


@dataclass
class FacePrediction:
    """One face in a photo: where, who (or unknown), how sure, and its nearest training face."""

    box: tuple[int, int, int, int]
    label: str
    confidence: float
    top3: list[tuple[str, float]]
    distance: float | None
    nearest: int  # index into the run's training gallery, -1 when none
    detector_score: float
    embedding: np.ndarray | None = field(default=None, repr=False, compare=False)  # for nearest training photos

    @property
    def unknown(self) -> bool:
        return self.label == UNKNOWN_LABEL

    @property
    def best_guess(self) -> str:
        """The person the head ranked first, even when the face was rejected as unknown."""
        return self.top3[0][0] if self.top3 else self.label

    def to_dict(self) -> dict[str, Any]:
        return {"box": list(self.box), "label": self.label, "confidence": round(self.confidence, 4),
                "top3": [[name, round(p, 4)] for name, p in self.top3],
                "distance": None if self.distance is None else round(self.distance, 4),
                "detector_score": round(self.detector_score, 4)}


@dataclass
class PhotoPrediction:
    """Every face of one photo; ``truth`` is the person folder's name when the photo is labelled."""

    name: str
    truth: str | None = None
    faces: list[FacePrediction] = field(default_factory=list)
    error: str | None = None

    @property
    def predicted(self) -> str | None:
        """The photo's answer: the label of its largest face (faces are sorted largest first)."""
        return self.faces[0].label if self.faces else None

    @property
    def correct(self) -> bool | None:
        """Whether the largest face was named right; None for unlabelled or unusable photos."""
        if self.truth is None or self.error is not None:
            return None
        return self.predicted == self.truth

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "truth": self.truth, "predicted": self.predicted, "correct": self.correct,
                "error": self.error, "faces": [f.to_dict() for f in self.faces]}


class Predictor:
    """A loaded run plus the pipeline it was trained with."""

    def __init__(self, run: Any, pipeline: Pipeline, rule: UnknownRule | None = None) -> None:
        self.run = run
        self.pipeline = pipeline
        extras = run.extras
        self.gallery = np.asarray(extras.get("train_embeddings", np.zeros((0, pipeline.backbone.embedding_dim))), np.float32)
        self.gallery_labels = [str(x) for x in extras.get("train_labels", [])]
        self.gallery_paths = [str(x) for x in extras.get("train_paths", [])]
        calibrated = extras.get("unknown_max_distance")
        default_distance = float(calibrated) if calibrated is not None and np.isfinite(calibrated) else None
        self.rule = rule or UnknownRule(min_confidence_for(len(run.labels)), default_distance)
        self.finetuned = run.head.kind == "finetune"

    def _classify(self, embeddings: np.ndarray, crops: np.ndarray | None) -> np.ndarray:
        return self.run.head.predict_proba(crops if self.finetuned else embeddings)

    def _faces(self, result: Any, probabilities: np.ndarray) -> list[FacePrediction]:
        labels = self.run.labels
        best, where = nearest_by_person(result.embeddings, self.gallery, self.gallery_labels, labels)
        faces = []
        for i, face in enumerate(result.faces):
            order = np.argsort(-probabilities[i])
            top = int(order[0])
            distance = float(best[i, top]) if np.isfinite(best[i, top]) else None
            confidence = float(probabilities[i, top])
            label = UNKNOWN_LABEL if self.rule.rejects(confidence, distance) else labels[top]
            faces.append(FacePrediction(face.box, label, confidence,
                                        [(labels[j], float(probabilities[i, j])) for j in order[:3]],
                                        distance, int(where[i, top]), face.score, result.embeddings[i]))
        return faces

    def nearest_training(self, face: FacePrediction, person: str, k: int = 4) -> list[tuple[int, float]]:
        """The ``k`` training faces of ``person`` closest to ``face``: (gallery index, cosine distance), nearest first."""
        mine = np.flatnonzero(np.asarray(self.gallery_labels) == person)
        if face.embedding is None or not len(mine):
            return []
        distances = pairwise_distances(face.embedding[None, :], self.gallery[mine], "cosine")[0]
        order = np.argsort(distances)[:k]
        return [(int(mine[i]), float(distances[i])) for i in order]

    def predict(self, sources: Sequence[Source], truths: Sequence[str | None] | None = None,
                progress: Progress | None = None) -> list[PhotoPrediction]:
        """Predict every face of every photo; an unusable photo gets ``error`` and the rest go on."""
        results = self.pipeline.embed(sources, progress=progress)
        photos = []
        for index, result in enumerate(results):
            photo = PhotoPrediction(result.name, truths[index] if truths else None, error=result.error)
            if result.ok and result.faces:
                crops = None
                if self.finetuned:
                    crops = np.stack([aligned.crop for _, aligned in self.pipeline.faces(load_source(sources[index]))])
                photo.faces = self._faces(result, self._classify(result.embeddings, crops))
            photos.append(photo)
        return photos

    def annotate(self, image: np.ndarray, photo: PhotoPrediction, max_side: int | None = None) -> np.ndarray:
        """The photo with each face boxed and named (unknown faces in red).

        With ``max_side`` the photo is shrunk first and the boxes with it, so gallery thumbnails
        get labels sized for the thumbnail rather than shrunk to illegibility.
        """
        factor = 1.0
        if max_side is not None:
            image, factor = downscale(image, max_side)
        return draw_labels(image, [
            Label(tuple(round(v * factor) for v in f.box),  # type: ignore[arg-type]
                  f"{f.label} {f.confidence:.0%}" if not f.unknown else UNKNOWN_LABEL,
                  UNKNOWN if f.unknown else KNOWN) for f in photo.faces
        ])


def load_source(source: Source) -> np.ndarray:
    """The decoded photo of a source (a path, or a (name, bytes) upload)."""
    return load_image(source[1] if isinstance(source, tuple) else source)


def relabel(photos: Sequence[PhotoPrediction], rule: UnknownRule) -> list[PhotoPrediction]:
    """The same predictions judged by another unknown rule, without re-embedding anything.

    Each face keeps its confidence and distance, so moving a threshold only changes which
    faces are called unknown; the originals are left untouched.
    """
    return [replace(photo, faces=[
        replace(face, label=UNKNOWN_LABEL if rule.rejects(face.confidence, face.distance) else face.best_guess)
        for face in photo.faces]) for photo in photos]


def per_person(photos: Sequence[PhotoPrediction]) -> list[dict[str, Any]]:
    """Per true person: labelled photos, how many were named right, accuracy, and faces rejected as unknown."""
    rows: dict[str, dict[str, Any]] = {}
    for photo in photos:
        if photo.correct is None or photo.truth is None:
            continue
        row = rows.setdefault(photo.truth, {"person": photo.truth, "photos": 0, "correct": 0, "unknown": 0})
        row["photos"] += 1
        row["correct"] += int(photo.correct)
        row["unknown"] += int(photo.predicted == UNKNOWN_LABEL)
    for row in rows.values():
        row["accuracy"] = row["correct"] / row["photos"]
    return [rows[name] for name in sorted(rows)]


CSV_COLUMNS = ("photo", "face", "box", "label", "confidence", "top3", "distance", "truth", "correct", "error")


def predictions_csv(photos: Sequence[PhotoPrediction]) -> str:
    """Every prediction as CSV: one row per face, and one row for each photo without a face or unusable.

    ``correct`` is judged on the photo's largest face (face 0) only, like :func:`accuracy`.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for photo in photos:
        correct = "" if photo.correct is None else str(photo.correct).lower()
        truth = photo.truth or ""
        if not photo.faces:
            writer.writerow([photo.name, "", "", "", "", "", "", truth, correct, photo.error or "no face found"])
        for index, face in enumerate(photo.faces):
            writer.writerow([
                photo.name, index, " ".join(str(v) for v in face.box), face.label, f"{face.confidence:.4f}",
                "; ".join(f"{name} {p:.4f}" for name, p in face.top3),
                "" if face.distance is None else f"{face.distance:.4f}", truth,
                correct if index == 0 else "", "",
            ])
    return buffer.getvalue()


def annotated_zip(predictor: Predictor, sources: Sequence[Source], photos: Sequence[PhotoPrediction]) -> bytes:
    """A zip of every usable photo with its faces boxed and named (JPEG, numbered so equal names never collide)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:  # JPEGs do not compress further
        for index, (source, photo) in enumerate(zip(sources, photos), 1):
            if photo.error is None:
                stem = Path(photo.name).stem or "photo"
                archive.writestr(f"{index:04d}_{stem}.jpg", encode_jpeg(predictor.annotate(load_source(source), photo)))
    return buffer.getvalue()


def accuracy(photos: Sequence[PhotoPrediction]) -> float | None:
    """Share of labelled photos whose largest face was named right; None when none is labelled."""
    judged = [p.correct for p in photos if p.correct is not None]
    return sum(judged) / len(judged) if judged else None


def predictor_for_run(run_id: str, rule: UnknownRule | None = None) -> Predictor:
    """Load a saved run with the same detector, alignment and backbone it was trained with."""

    run = load_run(run_id)
    config = run.config
    backbone = BACKBONES.get(config.backbone)
    if config.weights_id and backbone.weights_id != config.weights_id:
        raise ValueError(f"run {run_id} was trained with {config.backbone} weights {config.weights_id}, but this "
                         f"machine has {backbone.weights_id}; its predictions would be meaningless.")
    detector = DETECTORS.get(config.detector, **config.extra.get("detector_settings", {}))
    pipeline = Pipeline(detector, backbone, align=config.align)
    return Predictor(run, pipeline, rule)


def photo_sources(path: Path | str) -> tuple[list[Path], list[str | None]]:
    """Photos to predict: a dataset's labelled test split, or every image in a plain folder (unlabelled)."""

    root = Path(path)
    if not root.is_dir():
        raise ValueError(f"folder not found: {root}")
    dataset = scan(root)
    if "test" in dataset.splits:
        records = [r for r in dataset.images if r.split == "test"]
        if not records:
            raise ValueError(f"the test split of {root} has no photos.")
        return [r.path for r in records], [r.person for r in records]
    if "train" in dataset.splits:
        raise ValueError(f"{root} is a dataset without a test/ split; predicting its training photos would "
                         "say nothing about the model. Add a test split or pick a folder of new photos.")
    photos = sorted(p for p in root.rglob("*") if p.is_file() and is_image_name(p.name))
    if not photos:
        raise ValueError(f"no photos found in {root}")
    return photos, [None] * len(photos)


def confusion_table(photos: Sequence[PhotoPrediction], labels: Sequence[str]) -> tuple[list[str], list[list[int]]]:
    """Rows: true person; columns: predicted person, then unknown and no face. Labelled photos only."""
    columns = [*labels, UNKNOWN_LABEL, "no face"]
    rows = sorted({p.truth for p in photos if p.truth is not None})
    table = [[0] * len(columns) for _ in rows]
    for photo in photos:
        if photo.truth is None or photo.error is not None:
            continue
        predicted = photo.predicted or "no face"
        if predicted in columns:
            table[rows.index(photo.truth)][columns.index(predicted)] += 1
    return rows, table
