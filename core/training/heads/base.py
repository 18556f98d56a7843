"""The contract every head fulfils, and the embedding checks they share.

All heads L2-normalise each embedding first: backbones disagree wildly about scale (VGG fc8
values run into the hundreds while dlib's descriptors have length about 1), and for face
embeddings the direction carries the identity, not the length.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

HEAD_FILE = "head.json"  # kind and shape of the head, next to its weights
KERAS_FILE = "model.keras"


def check_embeddings(X: Any, what: str = "embeddings", dim: int | None = None) -> np.ndarray:
    """``X`` as a finite float32 (N, D) matrix, or a ValueError saying what is wrong with it."""
    array = np.asarray(X, dtype=np.float32)
    if array.ndim != 2:
        raise ValueError(f"{what} must be a 2-D matrix (photos × features); got shape {array.shape}.")
    if dim is not None and array.shape[1] != dim:
        raise ValueError(f"{what} have {array.shape[1]} features but this model expects {dim} "
                         "(were they made with a different backbone?).")
    if not np.isfinite(array).all():
        raise ValueError(f"{what} contain NaN or infinite values.")
    return array


def l2_normalise(X: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (all-zero rows stay zero instead of becoming NaN)."""
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.maximum(norms, 1e-12)


class Head(ABC):
    """A trained (or trainable) classifier over ``n_classes`` people for ``input_dim``-wide embeddings.

    Subclasses declare ``kind`` (the name runs store), ``mode`` ("head": chosen by the user and
    trained on embeddings; "finetune": made by fine-tuning), ``iterative`` (trains in epochs),
    ``uses_keras`` (its training seeds Keras) and ``savedmodel`` (exportable as a SavedModel on
    embeddings), then implement fitting, prediction and their own weight files.
    """

    kind: str = "?"
    mode: str = "head"
    iterative: bool = True  # False for heads fitted in one pass (no epochs, no callbacks)
    uses_keras: bool = False
    savedmodel: bool = False

    def __init__(self, input_dim: int, n_classes: int) -> None:
        if input_dim < 1 or n_classes < 2:
            raise ValueError(f"a head needs input_dim ≥ 1 and at least two classes; got {input_dim}, {n_classes}.")
        self.input_dim = input_dim
        self.n_classes = n_classes

    @abstractmethod
    def fit(self, X: np.ndarray, y: np.ndarray, *, epochs: int = 100, batch_size: int = 32,
            learning_rate: float = 1e-3, class_weight: dict[int, float] | None = None,
            callbacks: Sequence[Any] = ()) -> None:
        """Train on embeddings ``X`` and class indices ``y``.

        Validation is the callbacks' business (they see the model after every epoch); one-pass
        heads ignore the epoch settings and the callbacks.
        """

    @abstractmethod
    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities (N, n_classes) for embeddings (N, input_dim); rows sum to 1."""

    @abstractmethod
    def _save_weights(self, directory: Path) -> None: ...

    @classmethod
    @abstractmethod
    def _load_weights(cls, directory: Path, input_dim: int, n_classes: int) -> Head:
        """The head whose weights :meth:`_save_weights` wrote into ``directory``."""

    def save(self, directory: Path | str) -> None:
        """Write the head into ``directory`` (the run store makes the whole folder appear atomically)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self._save_weights(directory)
        meta = {"kind": self.kind, "input_dim": self.input_dim, "n_classes": self.n_classes}
        (directory / HEAD_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Most likely class index per row."""
        return np.argmax(self.predict_proba(X), axis=1)

    def export_savedmodel(self, directory: Path) -> None:
        """Write the head as a TensorFlow SavedModel (heads with ``savedmodel``): embeddings in, probabilities out."""
        self.model.export(str(directory), format="tf_saved_model", verbose=False)


def load_keras_model(path: Path, **options: Any) -> Any:
    """A saved Keras model, or a clear error naming the file (Keras heads and the fine-tuned head)."""
    import keras  # lazy: the Dataset page and head-free imports must not load TensorFlow

    if not path.is_file():
        raise FileNotFoundError(f"the model file {path} is missing.")
    try:
        return keras.saving.load_model(path, **options)
    except (ValueError, OSError) as exc:
        raise ValueError(f"{path} cannot be loaded ({exc}).") from exc
