"""A labelled dataset's embeddings as a gallery: for calibration, 1:N search and the embedding map.

Building a gallery embeds a whole dataset, so :class:`GalleryStore` keeps the last few in
memory (the Verify page shares one store between all its sessions).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.compare.distances import nearest
from core.compare.projection import TSNE_MAX_POINTS, TSNE_MIN_POINTS, project_2d, tsne_seconds
from core.data.layout import fingerprint, scan
from core.images import content_hash
from core.pipeline.embeddings import Pipeline, Progress, embed_dataset
from core.services.jobs import duration

GalleryKey = tuple[str, str, str]  # (dataset folder, dataset fingerprint, pipeline key)


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
    pipeline_key: str  # the pipeline that made the embeddings: they mean nothing to another one

    @property
    def photos(self) -> int:
        return len(self.paths) + len(self.no_face) + len(self.errors)


def dataset_fingerprint(root: Path | str) -> str:
    """The dataset's current identity: galleries and calibrations made on other contents no longer hold."""
    return fingerprint(scan(root))


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
    return Gallery(root, dataset_fingerprint(root), embeddings, labels, paths, no_face, errors, pipeline.key)


class GalleryStore:
    """The last ``kept`` galleries built, per dataset version and pipeline, oldest dropped first.

    Embedding a dataset takes minutes; a store shared by every user of a server does it once,
    and a dataset whose files change gets a new key, so a stale gallery is never served.
    """

    def __init__(self, kept: int = 4) -> None:
        if kept < 1:
            raise ValueError(f"a gallery store must keep at least one gallery, got {kept}")
        self.kept = kept
        self._galleries: dict[GalleryKey, Gallery] = {}
        self._lock = threading.Lock()  # sessions add and drop galleries from their own threads

    @staticmethod
    def key(pipeline: Pipeline, root: Path | str) -> GalleryKey:
        return str(root), dataset_fingerprint(root), pipeline.key

    def get(self, pipeline: Pipeline, root: Path | str) -> Gallery | None:
        """The stored gallery of this dataset, as it is now, for this pipeline; None when it must be built."""
        return self._galleries.get(self.key(pipeline, root))

    def load(self, pipeline: Pipeline, root: Path | str, progress: Progress | None = None) -> Gallery:
        """The stored gallery, or a newly built one (stored in place of the oldest when the store is full)."""
        key = self.key(pipeline, root)
        found = self._galleries.get(key)
        if found is not None:
            return found
        built = build_gallery(pipeline, root, progress=progress)  # outside the lock: other sessions go on
        with self._lock:
            if key not in self._galleries:  # another session may have built it meanwhile
                while len(self._galleries) >= self.kept:
                    self._galleries.pop(next(iter(self._galleries)))
                self._galleries[key] = built
            return self._galleries[key]


@dataclass(frozen=True)
class Match:
    """One candidate in a 1:N search: a person, their closest photo and its distance."""

    person: str
    distance: float
    path: Path


def search(gallery: Gallery, embedding: np.ndarray, metric: str, k: int = 5) -> list[Match]:
    """1:N search: the ``k`` nearest people in the gallery, closest first (each person once, at their closest photo)."""
    if not gallery.labels:
        raise ValueError(f"{gallery.root.name}: no photo with a face to compare with.")
    return [Match(str(label), distance, gallery.paths[index])
            for label, distance, index in nearest(embedding, gallery.embeddings, gallery.labels, metric, k)]


def projection_problem(gallery: Gallery, n_extra: int, method: str) -> str | None:
    """Why ``method`` cannot map the gallery plus ``n_extra`` faces (None when it can): t-SNE needs a few points,
    and more than its limit would hold the server's cores for minutes."""
    count = len(gallery.labels) + n_extra
    if method == "tsne" and count < TSNE_MIN_POINTS:
        return f"t-SNE needs at least {TSNE_MIN_POINTS} faces."
    if method == "tsne" and count > TSNE_MAX_POINTS:
        return (f"t-SNE maps at most {TSNE_MAX_POINTS:,} faces (this map has {count:,}: about "
                f"{duration(tsne_seconds(count))} of both cores); use PCA.")
    return None


def projection_eta(gallery: Gallery, n_extra: int, method: str) -> str | None:
    """A note of how long a slow map will take, so the user knows the wait is expected (None when it is quick)."""
    count = len(gallery.labels) + n_extra
    if method != "tsne" or tsne_seconds(count) < 10:
        return None
    return f"A t-SNE map of {count:,} faces takes about {duration(tsne_seconds(count))} to draw the first time."


def projection_key(gallery: Gallery, extra: Sequence[np.ndarray]) -> str:
    """Identity of a map of this gallery with these ``extra`` embeddings, to cache the (slow) t-SNE by."""
    return "|".join([str(gallery.root), gallery.fingerprint, gallery.pipeline_key,
                     *(content_hash(np.asarray(e).tobytes()) for e in extra)])


def embedding_map(gallery: Gallery, extra: Sequence[np.ndarray], method: str = "pca") -> tuple[np.ndarray, np.ndarray]:
    """2-D coordinates of the gallery and of the ``extra`` embeddings (the compared faces), in one projection."""
    stacked = np.vstack([gallery.embeddings, *[np.asarray(e, np.float32)[None] for e in extra]])
    coords = project_2d(stacked, method=method)
    return coords[:len(gallery.labels)], coords[len(gallery.labels):]


@dataclass(frozen=True)
class PersonPoints:
    """One person's photos on the embedding map: their 2-D points and file names, in gallery order."""

    person: str
    points: np.ndarray  # (n, 2)
    names: list[str]


def points_by_person(gallery: Gallery, points: np.ndarray) -> list[PersonPoints]:
    """The gallery's map points grouped per person, people sorted by name (one legend entry each)."""
    labels = np.asarray(gallery.labels)
    return [PersonPoints(person, points[labels == person],
                         [path.name for path, label in zip(gallery.paths, gallery.labels) if label == person])
            for person in sorted(set(gallery.labels))]
