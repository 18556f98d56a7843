"""Comparing face embeddings: distances, the same-person verdict, nearest people, a 2-D map.

Plain numpy only, so the Verify page and the CLI can use it without loading a model.

Zero vectors: a cosine or L2-normalised distance needs a direction, and an all-zero
embedding has none (it means the backbone produced nothing useful). Rather than invent a
value that would silently pass or fail verification, those metrics raise
:class:`ZeroEmbeddingError` naming the offending row. Plain euclidean distance is defined
for zero vectors and accepts them.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from core.calibration import Calibration

METRICS = ("cosine", "euclidean", "euclidean_l2")

# A vector shorter than this has no direction worth comparing.
ZERO_NORM = 1e-12

# Uncalibrated thresholds that favour neither answer: cosine distance 0.5 is an angle of 60°
# between embeddings, and euclidean_l2 = sqrt(2 * cosine distance) makes 1.0 the same angle.
NEUTRAL_THRESHOLDS: dict[str, float] = {"cosine": 0.5, "euclidean_l2": 1.0}

# dlib documents 0.6 as the euclidean threshold for its ResNet face descriptors.
DLIB_EUCLIDEAN_THRESHOLD = 0.6

# Uncalibrated confidence is a logistic in distance/threshold that is 0.5 at the threshold;
# this steepness makes it about 0.99 at half the threshold and 0.01 at 1.5 times it.
_DEFAULT_STEEPNESS = 10.0

PAIR_CHUNK = 1024  # index pairs whose rows are gathered at once by pair_distances

# Exact t-SNE holds n×n matrices and is O(n²) per iteration; below 5 points it means nothing.
TSNE_MIN_POINTS, TSNE_MAX_POINTS = 5, 5000


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


def default_thresholds(e1: np.ndarray, e2: np.ndarray, defaults: Mapping[str, float] | None = None) -> dict[str, float]:
    """Thresholds to use without a calibration: the caller's per-backbone ``defaults``, else neutral ones.

    Raw euclidean distance has no scale-free default (it grows with the embeddings' length),
    so its neutral default is the euclidean_l2 one scaled by the two vectors' geometric-mean
    length: for equal-length vectors the three metrics then give the same answer.
    """
    chosen = dict(defaults or {})
    for metric, value in chosen.items():
        check_metric(metric)
        if not np.isfinite(value) or value <= 0:
            raise ValueError(f"default threshold for {metric} must be a positive number, got {value}")
    scale = float(np.sqrt(np.linalg.norm(e1) * np.linalg.norm(e2)))
    neutral = {**NEUTRAL_THRESHOLDS, "euclidean": NEUTRAL_THRESHOLDS["euclidean_l2"] * max(scale, ZERO_NORM)}
    return {metric: float(chosen.get(metric, neutral[metric])) for metric in METRICS}


@dataclass(frozen=True)
class Verdict:
    """The answer to "same person?" with everything the Verify page shows about how it was reached.

    ``confidence`` is P(same person | distance on ``metric``). With a calibration it comes
    from a logistic fit on that dataset's genuine and impostor distances (equal priors); with
    defaults (``threshold_source == "default"``) it is only a rough guide: 0.5 at the
    threshold, falling smoothly either side. A threshold chosen at a target false-accept rate
    need not sit where confidence is 0.5, so a verified pair can show confidence below 0.5.
    """

    verified: bool
    metric: str  # the metric that decided
    distance: float  # on ``metric``
    threshold: float  # on ``metric``
    confidence: float  # in [0, 1]
    distances: dict[str, float]
    thresholds: dict[str, float]
    threshold_source: str  # "calibrated" or "default"

    def to_dict(self) -> dict:
        """JSON-ready form (for the CLI)."""
        return asdict(self)


def verify(e1: np.ndarray | Sequence, e2: np.ndarray | Sequence, calibration: Calibration | None = None,
           defaults: Mapping[str, float] | None = None, metric: str | None = None) -> Verdict:
    """Decide whether two embeddings show the same person.

    The deciding metric is ``metric`` if given, else the calibration's chosen metric, else
    cosine. Thresholds come from ``calibration`` when there is one (``defaults`` is then
    ignored), otherwise from ``defaults`` (e.g. ``{"euclidean": DLIB_EUCLIDEAN_THRESHOLD}``
    for dlib's ResNet) topped up with neutral values; a distance equal to the threshold is
    accepted.
    """
    a, b = as_vector(e1, "first embedding"), as_vector(e2, "second embedding")
    measured = distances(a, b)
    if calibration is not None:
        if calibration.embedding_dim != a.size:
            raise ValueError(
                f"the calibration was made with {calibration.embedding_dim}-long embeddings, these are {a.size}-long"
            )
        primary = metric or calibration.metric
        check_metric(primary)
        thresholds, source = dict(calibration.thresholds), "calibrated"
        confidence = calibration.confidence(primary, measured[primary])
    else:
        primary = metric or "cosine"
        check_metric(primary)
        thresholds, source = default_thresholds(a, b, defaults), "default"
        steepness = _DEFAULT_STEEPNESS / thresholds[primary]
        confidence = logistic_confidence(measured[primary], _DEFAULT_STEEPNESS, -steepness)
    return Verdict(
        verified=bool(measured[primary] <= thresholds[primary]),
        metric=primary,
        distance=measured[primary],
        threshold=thresholds[primary],
        confidence=confidence,
        distances=measured,
        thresholds=thresholds,
        threshold_source=source,
    )


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


def project_2d(embeddings: np.ndarray, method: str = "pca", perplexity: float = 30.0, seed: int = 0,
               iterations: int = 1000) -> np.ndarray:
    """A 2-D map of embeddings (n, 2) for the embedding-space plot.

    ``pca``: the two directions of largest spread (exact, instant). ``tsne``: exact t-SNE,
    which keeps neighbours together at the cost of global distances; O(n²) per iteration,
    meant for at most a few thousand points; deterministic for a given ``seed``.
    """
    matrix = as_matrix(embeddings)
    if method == "pca":
        return _pca(matrix)
    if method == "tsne":
        return _tsne(matrix, perplexity, seed, iterations)
    raise ValueError(f"unknown projection '{method}'; choose 'pca' or 'tsne'")


def _pca(matrix: np.ndarray) -> np.ndarray:
    """Coordinates on the two leading principal axes, from the eigenvectors of the smaller Gram matrix.

    Equivalent to an SVD of the centred data, but an eigen-decomposition of an
    min(n, d)-square matrix is several times faster for 1000 × 2622 embeddings.
    """
    centred = matrix - matrix.mean(axis=0)
    if centred.shape[0] <= centred.shape[1]:
        values, vectors = np.linalg.eigh(centred @ centred.T)
        leading = vectors[:, ::-1][:, :2]
        coords = leading * np.sqrt(np.maximum(values[::-1][:2], 0.0))
        axes = centred.T @ leading
    else:
        axes = np.linalg.eigh(centred.T @ centred)[1][:, ::-1][:, :2]
        coords = centred @ axes
    # An eigenvector's sign is arbitrary; fix it by each axis's largest loading so maps never flip.
    signs = np.sign(axes[np.abs(axes).argmax(axis=0), np.arange(axes.shape[1])])
    coords = coords * np.where(signs == 0, 1.0, signs)
    return np.pad(coords, ((0, 0), (0, 2 - coords.shape[1])))


def _entropy_matched_probabilities(sq_dist: np.ndarray, perplexity: float) -> np.ndarray:
    """Row-wise Gaussian neighbour probabilities whose entropy is log(perplexity), by bisection on log β."""
    n = sq_dist.shape[0]
    off = ~np.eye(n, dtype=bool)
    # Distances relative to each row's nearest neighbour keep exp() in range; β adapts to the scale.
    shifted = np.where(off, sq_dist - np.min(np.where(off, sq_dist, np.inf), axis=1, keepdims=True), 0.0)
    target = np.log(perplexity)
    low, high = np.full(n, -30.0), np.full(n, 30.0)
    for _ in range(50):
        log_beta = (low + high) / 2
        weights = np.exp(-shifted * np.exp(log_beta)[:, None]) * off
        probabilities = weights / weights.sum(axis=1, keepdims=True)
        entropy = -(probabilities * np.log(np.maximum(probabilities, 1e-300))).sum(axis=1)
        too_flat = entropy > target  # entropy falls as β grows
        low = np.where(too_flat, log_beta, low)
        high = np.where(too_flat, high, log_beta)
    return probabilities


def _tsne(matrix: np.ndarray, perplexity: float, seed: int, iterations: int) -> np.ndarray:
    n = matrix.shape[0]
    if not TSNE_MIN_POINTS <= n <= TSNE_MAX_POINTS:
        raise ValueError(f"t-SNE needs between {TSNE_MIN_POINTS} and {TSNE_MAX_POINTS} embeddings, got {n}; use PCA")
    if perplexity <= 1 or iterations < 1:
        raise ValueError("t-SNE needs perplexity > 1 and at least one iteration")
    sq = (matrix * matrix).sum(axis=1)
    sq_dist = np.maximum(sq[:, None] + sq[None, :] - 2.0 * matrix @ matrix.T, 0.0)
    # Perplexity is an effective neighbour count, so it must stay well below the number of points.
    conditional = _entropy_matched_probabilities(sq_dist, min(perplexity, (n - 1) / 3))
    joint = np.maximum((conditional + conditional.T) / (2 * n), 1e-12)

    exaggeration_steps, exaggeration = min(250, iterations // 4), 12.0
    rate = max(n / exaggeration / 4, 50.0)
    points = np.random.default_rng(seed).normal(0.0, 1e-4, (n, 2))
    velocity, gains = np.zeros_like(points), np.ones_like(points)
    exaggerated = exaggeration * joint
    for step in range(iterations):
        early = step < exaggeration_steps
        squared = (points * points).sum(axis=1)
        kernel = np.maximum(squared[:, None] + squared[None, :] - 2.0 * points @ points.T, 0.0)
        kernel += 1.0
        np.reciprocal(kernel, out=kernel)  # Student-t similarity of the 2-D points
        np.fill_diagonal(kernel, 0.0)
        attraction = (exaggerated if early else joint) - kernel / kernel.sum()
        attraction *= kernel
        gradient = 4.0 * (attraction.sum(axis=1)[:, None] * points - attraction @ points)
        gains = np.maximum(np.where(gradient * velocity < 0, gains + 0.2, gains * 0.8), 0.01)
        velocity = (0.5 if early else 0.8) * velocity - rate * gains * gradient
        points = points + velocity
    return points - points.mean(axis=0)
