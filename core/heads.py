"""Classifier heads: the small models that turn face embeddings into "which person is this".

Every head sees embeddings only (an (N, D) float32 matrix and integer class indices), so it
does not care which backbone, detector or alignment produced them. All heads L2-normalise
each embedding first: backbones disagree wildly about scale (VGG fc8 values run into the
hundreds while dlib's descriptors have length about 1), and for face embeddings the
direction carries the identity, not the length. Keras heads then multiply by √D so each
component is of order 1, which suits the default initialisers and a 1e-3 learning rate
whatever the embedding size. The normalisation lives inside the Keras model, so a saved or
exported model accepts raw embeddings.

Three heads:

* ``notebook`` — the head of the classic VGG-Face fine-tuning notebook (Dense → BatchNorm →
  tanh → Dropout, twice, then softmax). The notebook used widths 100 and 10; a 10-wide
  bottleneck is narrower than the number of people in most class datasets and costs accuracy
  (90.5 % against 97.8 % for logistic regression on 23 people), so the widths grow with the
  number of classes: w1 = max(100, 4·C), w2 = max(10, 2·C).
* ``softmax`` — multinomial logistic regression with a small L2 penalty.
* ``centroid`` — nearest class mean by cosine similarity; needs no training epochs.
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

HEAD_FILE = "head.json"  # kind and shape of the head, next to its weights
KERAS_FILE = "model.keras"
CENTROID_FILE = "centroids.npz"


@dataclass(frozen=True)
class HeadKind:
    """What the Train page shows for one head choice."""

    name: str
    label: str
    description: str


HEAD_KINDS: dict[str, HeadKind] = {
    kind.name: kind
    for kind in (
        HeadKind("softmax", "Softmax (logistic regression)",
                 "One dense softmax layer on normalised embeddings; fast, strong with good embeddings."),
        HeadKind("notebook", "Two hidden layers (VGG-Face notebook)",
                 "Dense → BatchNorm → tanh → Dropout twice, then softmax; widths grow with the number of people."),
        HeadKind("centroid", "Nearest centroid (no training)",
                 "Average embedding per person; a photo goes to the closest average by cosine similarity."),
    )
}


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
    """A trained (or trainable) classifier over ``n_classes`` people for ``input_dim``-wide embeddings."""

    kind: str = "?"
    iterative: bool = True  # False for heads fitted in one pass (no epochs, no callbacks)

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

    def save(self, directory: Path | str) -> None:
        """Write the head into ``directory`` (the run store makes the whole folder appear atomically)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self._save_weights(directory)
        meta = {"kind": self.kind, "input_dim": self.input_dim, "n_classes": self.n_classes}
        (directory / HEAD_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path | str) -> Head:
        """The head saved in ``directory``, whichever kind it is."""
        directory = Path(directory)
        try:
            meta = json.loads((directory / HEAD_FILE).read_text(encoding="utf-8"))
            kind, input_dim, n_classes = meta["kind"], int(meta["input_dim"]), int(meta["n_classes"])
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"no saved head in {directory} ({HEAD_FILE} is missing).") from exc
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{directory / HEAD_FILE} is damaged ({exc}).") from exc
        if kind == CentroidHead.kind:
            return CentroidHead._load_weights(directory, input_dim, n_classes)
        if kind in KerasHead.BUILDERS:
            return KerasHead._load_weights(directory, kind, input_dim, n_classes)
        if kind == "finetune":
            from core.finetune import FinetunedHead  # imports Keras and VGG16: only for fine-tuned runs

            return FinetunedHead._load_weights(directory, input_dim, n_classes)
        raise ValueError(f"{directory}: unknown head kind '{kind}'.")

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Most likely class index per row."""
        return np.argmax(self.predict_proba(X), axis=1)


def _build_softmax(keras: Any, x: Any, n_classes: int) -> Any:
    return keras.layers.Dense(n_classes, activation="softmax", kernel_regularizer=keras.regularizers.L2(1e-4),
                              name="classes")(x)


def _build_notebook(keras: Any, x: Any, n_classes: int) -> Any:
    layers = keras.layers
    for index, (width, dropout) in enumerate(((max(100, 4 * n_classes), 0.3), (max(10, 2 * n_classes), 0.2)), 1):
        x = layers.Dense(width, name=f"dense{index}")(x)
        x = layers.BatchNormalization(name=f"bn{index}")(x)
        x = layers.Activation("tanh", name=f"tanh{index}")(x)
        x = layers.Dropout(dropout, name=f"dropout{index}")(x)
    return layers.Dense(n_classes, activation="softmax", name="classes")(x)


class KerasHead(Head):
    """A Keras model over normalised embeddings; ``kind`` picks the layers after the normalisation."""

    BUILDERS = {"softmax": _build_softmax, "notebook": _build_notebook}

    def __init__(self, kind: str, input_dim: int, n_classes: int, model: Any = None) -> None:
        super().__init__(input_dim, n_classes)
        if kind not in self.BUILDERS:
            raise ValueError(f"unknown Keras head '{kind}'; choose one of: {', '.join(self.BUILDERS)}")
        self.kind = kind
        self.model = model if model is not None else self._build()

    def _build(self) -> Any:
        import keras

        inputs = keras.Input(shape=(self.input_dim,), name="embedding")
        x = keras.layers.UnitNormalization(name="l2_normalise")(inputs)
        x = keras.layers.Rescaling(math.sqrt(self.input_dim), name="unit_scale")(x)
        outputs = self.BUILDERS[self.kind](keras, x, self.n_classes)
        return keras.Model(inputs, outputs, name=f"facelab_{self.kind}_head")

    def fit(self, X: np.ndarray, y: np.ndarray, *, epochs: int = 100, batch_size: int = 32,
            learning_rate: float = 1e-3, class_weight: dict[int, float] | None = None,
            callbacks: Sequence[Any] = ()) -> None:
        import keras
        import tensorflow as tf

        # One model.fit over an endlessly repeated, reshuffled dataset: Keras then keeps one
        # iterator for all epochs instead of building a shuffled one per epoch, which was 2/3 of
        # the time on small datasets. XLA is off because compiling costs more than it saves here.
        weights = np.ones(len(y), np.float32)
        if class_weight:
            weights = np.array([class_weight.get(int(c), 1.0) for c in y], np.float32)
        dataset = (tf.data.Dataset.from_tensor_slices((X.astype(np.float32), np.asarray(y, np.int64), weights))
                   .shuffle(len(y), reshuffle_each_iteration=True).batch(batch_size).repeat())
        self.model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="sparse_categorical_crossentropy",
                           metrics=["accuracy"], jit_compile=False)
        self.model.fit(dataset, epochs=epochs, steps_per_epoch=math.ceil(len(y) / batch_size),
                       callbacks=list(callbacks), shuffle=False, verbose=0)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        X = check_embeddings(X, dim=self.input_dim)
        if not len(X):
            return np.zeros((0, self.n_classes), np.float32)
        # predict_on_batch reuses one compiled function and skips predict()'s per-call setup; both
        # matter when the training loop scores the validation split after every epoch.
        chunks = [self.model.predict_on_batch(X[i:i + 4096]) for i in range(0, len(X), 4096)]
        return np.concatenate(chunks).astype(np.float32)

    def _save_weights(self, directory: Path) -> None:
        self.model.save(directory / KERAS_FILE)

    @classmethod
    def _load_weights(cls, directory: Path, kind: str, input_dim: int, n_classes: int) -> KerasHead:
        import keras

        path = directory / KERAS_FILE
        if not path.is_file():
            raise FileNotFoundError(f"the model file {path} is missing.")
        try:
            model = keras.saving.load_model(path, compile=False)
        except (ValueError, OSError) as exc:
            raise ValueError(f"{path} cannot be loaded ({exc}).") from exc
        return cls(kind, input_dim, n_classes, model=model)


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


def make_head(kind: str, input_dim: int, n_classes: int) -> Head:
    """A new, untrained head of ``kind`` (one of HEAD_KINDS)."""
    if kind == CentroidHead.kind:
        return CentroidHead(input_dim, n_classes)
    if kind in KerasHead.BUILDERS:
        return KerasHead(kind, input_dim, n_classes)
    raise ValueError(f"unknown head '{kind}'; choose one of: {', '.join(HEAD_KINDS)}")
