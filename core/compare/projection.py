"""A 2-D map of embeddings for the embedding-space plot: PCA, or t-SNE to keep neighbours together.
"""

from __future__ import annotations

import numpy as np

from core.compare.distances import as_matrix

# Below 5 points t-SNE's neighbourhoods mean nothing. Above the limit a map would hold the server for more than
# 3 minutes: on two cores a point costs 2.3 ms when they are idle, 3.7 ms when busy (BENCHMARKS.md, issue 14).
TSNE_MIN_POINTS, TSNE_MAX_POINTS = 5, 60_000
TSNE_SECONDS_PER_POINT = 0.003
# Below this, one thread: an iteration is too short to share, and threads waiting for a busy server's cores made
# 1,600- and 3,200-point maps 3-4× slower. From here (where openTSNE switches to FFT gradients) iterations are long.
TSNE_THREADED_FROM = 10_000


def tsne_seconds(count: int) -> float:
    """Rough seconds a t-SNE map of ``count`` points takes on two cores: its cost grows linearly."""
    return count * TSNE_SECONDS_PER_POINT


def project_2d(embeddings: np.ndarray, method: str = "pca", perplexity: float = 30.0, seed: int = 0,
               iterations: int = 750) -> np.ndarray:
    """A 2-D map of embeddings (n, 2) for the embedding-space plot.

    ``pca``: the two directions of largest spread (exact, instant). ``tsne``: t-SNE, which keeps neighbours
    together at the cost of global distances; openTSNE's approximations make it linear in n (see
    ``tsne_seconds``); the same ``seed`` gives the same map on the same machine (threads change the sums).
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


def _tsne(matrix: np.ndarray, perplexity: float, seed: int, iterations: int) -> np.ndarray:
    """openTSNE's t-SNE from a PCA start: a quarter of the steps (at most 250) with early exaggeration, then the rest."""
    n = matrix.shape[0]
    if not TSNE_MIN_POINTS <= n <= TSNE_MAX_POINTS:
        raise ValueError(f"t-SNE maps between {TSNE_MIN_POINTS} and {TSNE_MAX_POINTS:,} embeddings, got {n:,}; "
                         "use PCA")
    if perplexity <= 1 or iterations < 1:
        raise ValueError("t-SNE needs perplexity > 1 and at least one iteration")
    # Lazy: openTSNE loads scikit-learn and scipy (about a second); only a page that draws a t-SNE map pays for it.
    from openTSNE import TSNE

    early = min(250, iterations // 4)
    # Perplexity is an effective neighbour count, so it must stay well below the number of points.
    embedding = TSNE(perplexity=min(perplexity, (n - 1) / 3), early_exaggeration_iter=early,
                     n_iter=iterations - early, random_state=seed,
                     n_jobs=1 if n < TSNE_THREADED_FROM else -1).fit(matrix)
    points = np.asarray(embedding, dtype=np.float64)
    return points - points.mean(axis=0)
