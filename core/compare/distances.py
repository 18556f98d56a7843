"""Distances between face embeddings, and the nearest people to a face.

Plain numpy only, so the Verify page and the CLI can use it without loading a model.

Zero vectors: a cosine or L2-normalised distance needs a direction, and an all-zero
embedding has none (it means the backbone produced nothing useful). Rather than invent a
value that would silently pass or fail verification, those metrics raise
:class:`ZeroEmbeddingError` naming the offending row. Plain euclidean distance is defined
for zero vectors and accepts them.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    pass


METRICS = ("cosine", "euclidean", "euclidean_l2")


# A vector shorter than this has no direction worth comparing.
ZERO_NORM = 1e-12


PAIR_CHUNK = 1024  # index pairs whose rows are gathered at once by pair_distances


class ZeroEmbeddingError(ValueError):
    """An all-zero embedding where a direction is needed (cosine and L2-normalised metrics)."""


def check_metric(metric: str) -> None:
    """Refuse a metric name outside METRICS with a message listing them."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric '{metric}'; choose one of: {', '.join(METRICS)}")


def as_matrix(values: np.ndarray | Sequence, name: str = "embeddings") -> np.ndarray:
    """A float64 (n, d) matrix with n, d ≥ 1 and only finite values, or a ValueError saying what is wrong."""
    matrix = np.asarray(values, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] == 0 or matrix.shape[1] == 0:
        raise ValueError(f"{name} must be a non-empty 2-D array (count × dimensions), got shape {matrix.shape}")
    bad = ~np.isfinite(matrix).all(axis=1)
    if bad.any():
        raise ValueError(f"{name} row {int(np.argmax(bad))} contains NaN or infinite values")
    return matrix


def as_vector(values: np.ndarray | Sequence, name: str = "embedding") -> np.ndarray:
    """A finite float64 1-D embedding; a (1, d) array is accepted as one vector."""
    vector = np.asarray(values, dtype=np.float64)
    if vector.ndim == 2 and vector.shape[0] == 1:
        vector = vector[0]
    if vector.ndim != 1 or vector.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D vector, got shape {vector.shape}")
    if not np.isfinite(vector).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return vector


def check_same_length(a: np.ndarray, b: np.ndarray) -> None:
    """Refuse to compare embeddings of different lengths (vectors or rows of matrices)."""
    if a.shape[-1] != b.shape[-1]:
        raise ValueError(
            f"embeddings have different lengths ({a.shape[-1]} and {b.shape[-1]}); "
            "were they made by different backbones?"
        )


def _norms(matrix: np.ndarray, name: str, need_direction: bool) -> np.ndarray:
    """Row lengths; with ``need_direction`` an all-zero row raises ZeroEmbeddingError naming it."""
    norms = np.linalg.norm(matrix, axis=1)
    zero = norms < ZERO_NORM
    if need_direction and zero.any():
        raise ZeroEmbeddingError(
            f"{name} row {int(np.argmax(zero))} is all zeros, so it has no direction to compare "
            "(cosine and euclidean_l2 need one)"
        )
    return norms


def _from_dots(dots: np.ndarray, norms_a: np.ndarray, norms_b: np.ndarray, metric: str) -> np.ndarray:
    """A metric from dot products and lengths, so one matrix product serves every metric.

    ‖a − b‖² = ‖a‖² + ‖b‖² − 2a·b; cosine = 1 − a·b / (‖a‖‖b‖); euclidean_l2 = √(2·cosine).
    """
    if metric == "euclidean":
        return np.sqrt(np.maximum(norms_a**2 + norms_b**2 - 2.0 * dots, 0.0))
    cosine = np.clip(1.0 - dots / (norms_a * norms_b), 0.0, 2.0)
    return cosine if metric == "cosine" else np.sqrt(2.0 * cosine)


def paired_distances(a: np.ndarray, b: np.ndarray, metric: str = "cosine") -> np.ndarray:
    """Distance between each row of ``a`` and the same row of ``b``: shape (n,), exact for identical rows."""
    check_metric(metric)
    a, b = as_matrix(a, "first embeddings"), as_matrix(b, "second embeddings")
    check_same_length(a, b)
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"paired distances need as many rows on both sides ({a.shape[0]} vs {b.shape[0]})")
    if metric == "euclidean":
        return np.linalg.norm(a - b, axis=1)
    ua = a / _norms(a, "first embeddings", True)[:, None]
    ub = b / _norms(b, "second embeddings", True)[:, None]
    if metric == "cosine":
        return np.clip(1.0 - np.einsum("ij,ij->i", ua, ub), 0.0, 2.0)
    return np.linalg.norm(ua - ub, axis=1)


def pairwise_distances(a: np.ndarray, b: np.ndarray, metric: str = "cosine") -> np.ndarray:
    """Distance from every row of ``a`` (n, d) to every row of ``b`` (m, d): shape (n, m).

    Built on one matrix product, so values agree with the scalar functions to about 1e-8
    (an exact 0 may come out as a tiny positive number).
    """
    check_metric(metric)
    a, b = as_matrix(a, "first embeddings"), as_matrix(b, "second embeddings")
    check_same_length(a, b)
    direction = metric != "euclidean"
    norms_a, norms_b = _norms(a, "first embeddings", direction), _norms(b, "second embeddings", direction)
    return _from_dots(a @ b.T, norms_a[:, None], norms_b[None, :], metric)


def pair_distances(embeddings: np.ndarray, index_pairs: np.ndarray,
                   metrics: Sequence[str] = METRICS) -> dict[str, np.ndarray]:
    """Distances for many (i, j) index pairs into one matrix — calibration's workload.

    One dot product per pair serves every metric, and rows are gathered a chunk at a time
    so thousands of 2622-long vectors never fill memory.
    """
    for metric in metrics:
        check_metric(metric)
    matrix = as_matrix(embeddings)
    index_pairs = np.asarray(index_pairs, dtype=np.int64).reshape(-1, 2)
    norms = _norms(matrix, "embeddings", any(metric != "euclidean" for metric in metrics))
    chunks = np.array_split(index_pairs, max(1, -(-len(index_pairs) // PAIR_CHUNK)))
    dots = np.concatenate([np.einsum("ij,ij->i", matrix[c[:, 0]], matrix[c[:, 1]]) for c in chunks])
    first, second = norms[index_pairs[:, 0]], norms[index_pairs[:, 1]]
    return {metric: _from_dots(dots, first, second, metric) for metric in metrics}


def _scalar(a: np.ndarray | Sequence, b: np.ndarray | Sequence, metric: str) -> float:
    return float(paired_distances(as_vector(a, "first embedding")[None], as_vector(b, "second embedding")[None], metric)[0])


def cosine_distance(a: np.ndarray | Sequence, b: np.ndarray | Sequence) -> float:
    """1 − cos(angle between a and b), in [0, 2]; raises ZeroEmbeddingError for a zero vector."""
    return _scalar(a, b, "cosine")


def euclidean_distance(a: np.ndarray | Sequence, b: np.ndarray | Sequence) -> float:
    """Straight-line distance ‖a − b‖ (depends on the embeddings' lengths)."""
    return _scalar(a, b, "euclidean")


def euclidean_l2_distance(a: np.ndarray | Sequence, b: np.ndarray | Sequence) -> float:
    """‖a/‖a‖ − b/‖b‖‖, in [0, 2]: euclidean distance that ignores length; raises for a zero vector."""
    return _scalar(a, b, "euclidean_l2")


def distances(a: np.ndarray | Sequence, b: np.ndarray | Sequence) -> dict[str, float]:
    """All METRICS between two embeddings."""
    return {metric: _scalar(a, b, metric) for metric in METRICS}


def logistic_confidence(distance: float, intercept: float, slope: float) -> float:
    """P(same person | distance) = σ(intercept + slope·distance), computed without overflow."""
    z = intercept + slope * distance
    if z >= 0:
        return float(1.0 / (1.0 + np.exp(-z)))
    e = np.exp(z)
    return float(e / (1.0 + e))


def nearest(query: np.ndarray | Sequence, gallery_embeddings: np.ndarray, gallery_labels: Sequence[Hashable],
            metric: str = "cosine", k: int = 5) -> list[tuple[Hashable, float, int]]:
    """The ``k`` closest people to ``query``: (label, best distance, gallery index of that photo), closest first.

    Each person appears once, at their closest photo, so a person with many photos cannot
    fill the whole list.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    gallery = as_matrix(gallery_embeddings, "gallery embeddings")
    if len(gallery_labels) != gallery.shape[0]:
        raise ValueError(f"the gallery has {gallery.shape[0]} embeddings but {len(gallery_labels)} labels")
    row = pairwise_distances(as_vector(query, "query embedding")[None], gallery, metric)[0]
    best: dict[Hashable, int] = {}
    for index in np.argsort(row, kind="stable"):
        best.setdefault(gallery_labels[index], int(index))
    return [(label, float(row[index]), index) for label, index in list(best.items())[:k]]
