"""What the Keras heads share: normalisation inside the model, one fit loop, save and load.

Keras heads multiply the L2-normalised embedding by √D so each component is of order 1,
which suits the default initialisers and a 1e-3 learning rate whatever the embedding size.
The normalisation lives inside the Keras model, so a saved or exported model accepts raw
embeddings. Subclasses only say which layers follow it (:meth:`KerasHead.layers`).
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from core.training.heads.base import KERAS_FILE, Head, check_embeddings, load_keras_model


class KerasHead(Head):
    """A Keras model over normalised embeddings."""

    uses_keras = True
    savedmodel = True

    def __init__(self, input_dim: int, n_classes: int, model: Any = None) -> None:
        super().__init__(input_dim, n_classes)
        self.model = model if model is not None else self._build()

    @staticmethod
    @abstractmethod
    def layers(keras: Any, x: Any, n_classes: int) -> Any:
        """The layers after the normalisation, ending in a softmax over ``n_classes``."""

    def _build(self) -> Any:
        import keras

        inputs = keras.Input(shape=(self.input_dim,), name="embedding")
        x = keras.layers.UnitNormalization(name="l2_normalise")(inputs)
        x = keras.layers.Rescaling(math.sqrt(self.input_dim), name="unit_scale")(x)
        return keras.Model(inputs, self.layers(keras, x, self.n_classes), name=f"facelab_{self.kind}_head")

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
    def _load_weights(cls, directory: Path, input_dim: int, n_classes: int) -> KerasHead:
        return cls(input_dim, n_classes, model=load_keras_model(directory / KERAS_FILE, compile=False))
