"""A labelled dataset's embeddings as a gallery: for calibration, 1:N search and the embedding map.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.compare.distances import nearest
from core.compare.projection import project_2d
from core.data.layout import fingerprint, scan
from core.pipeline.embeddings import Pipeline, Progress, embed_dataset


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
