"""A 2-D map of embeddings for the embedding-space plot: PCA, or t-SNE to keep neighbours together.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    pass
from core.compare.distances import as_matrix

# Exact t-SNE holds n×n matrices and is O(n²) per iteration; below 5 points it means nothing.
TSNE_MIN_POINTS, TSNE_MAX_POINTS = 5, 5000


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
