"""The ``centroid`` head: nearest class mean by cosine similarity; needs no training epochs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from core.registry import Entry
from core.training.heads import HEADS
from core.training.heads.base import Head, check_embeddings, l2_normalise

CENTROID_FILE = "centroids.npz"


class CentroidHead(Head):
    """Nearest class centroid on the unit sphere.

    Probabilities are a softmax over cosine similarities divided by ``temperature``
    (equivalently over negative cosine distances): 0.05 makes a similarity lead of 0.1 worth
    a factor e² ≈ 7.4, so confident matches read as confident without being 1.0 for
    everything. Accuracy does not depend on the temperature, only the confidence shown.
    """

    kind = "centroid"
    iterative = False

    def __init__(self, input_dim: int, n_classes: int, temperature: float = 0.05,
                 centroids: np.ndarray | None = None) -> None:
        super().__init__(input_dim, n_classes)
        if temperature <= 0:
            raise ValueError(f"temperature must be positive; got {temperature}.")
        self.temperature = float(temperature)
        self.centroids = centroids

    def fit(self, X: np.ndarray, y: np.ndarray, *, epochs: int = 100, batch_size: int = 32,
            learning_rate: float = 1e-3, class_weight: dict[int, float] | None = None,
            callbacks: Sequence[Any] = ()) -> None:
        X = l2_normalise(check_embeddings(X, dim=self.input_dim))
        y = np.asarray(y)
        missing = sorted(set(range(self.n_classes)) - set(y.tolist()))
        if missing:
            raise ValueError(f"classes {missing} have no training embeddings.")
        means = np.stack([X[y == c].mean(axis=0) for c in range(self.n_classes)])
        self.centroids = l2_normalise(means).astype(np.float32)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        if self.centroids is None:
            raise ValueError("the centroid head has not been fitted yet.")
        logits = l2_normalise(check_embeddings(X, dim=self.input_dim)) @ self.centroids.T / self.temperature
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)

    def _save_weights(self, directory: Path) -> None:
        if self.centroids is None:
            raise ValueError("the centroid head has not been fitted yet; nothing to save.")
        np.savez(directory / CENTROID_FILE, centroids=self.centroids, temperature=np.float32(self.temperature))

    @classmethod
    def _load_weights(cls, directory: Path, input_dim: int, n_classes: int) -> CentroidHead:
        path = directory / CENTROID_FILE
        try:
            with np.load(path, allow_pickle=False) as data:
                centroids, temperature = data["centroids"].astype(np.float32), float(data["temperature"])
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"the centroid file {path} is missing.") from exc
        except (ValueError, KeyError, OSError) as exc:
            raise ValueError(f"{path} is damaged ({exc}).") from exc
        if centroids.shape != (n_classes, input_dim):
            raise ValueError(f"{path} holds centroids of shape {centroids.shape}, expected {(n_classes, input_dim)}.")
        return cls(input_dim, n_classes, temperature, centroids)


HEADS.register(Entry(
    name=CentroidHead.kind,
    label="Nearest centroid (no training)",
    factory=CentroidHead,
    description="Average embedding per person; a photo goes to the closest average by cosine similarity.",
))
