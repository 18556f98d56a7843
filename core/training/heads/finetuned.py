"""The fine-tuned head: a whole face CNN retrained end to end, made by fine-tune mode (core.training.finetune).

Its input is aligned face crops instead of embeddings, so the run store, the Train page and
prediction treat both modes alike through the :class:`Head` interface.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from core.registry import Entry
from core.training.heads import HEADS
from core.training.heads.base import KERAS_FILE, Head, load_keras_model

PREDICT_BATCH = 32


class FinetunedHead(Head):
    """A fine-tuned VGGFace16 classifier; its "embeddings" are uint8 crops of shape (N, S, S, 3)."""

    kind = "finetune"
    mode = "finetune"
    uses_keras = True

    def __init__(self, input_size: int, n_classes: int, model: Any) -> None:
        super().__init__(input_size, n_classes)
        self.model = model

    def fit(self, X: np.ndarray, y: np.ndarray, *, epochs: int = 10, batch_size: int = 16,
            learning_rate: float = 1e-5, class_weight: dict[int, float] | None = None,
            callbacks: Sequence[Any] = (), initial_epoch: int = 0) -> None:
        import keras

        self.model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="sparse_categorical_crossentropy",
                           metrics=["accuracy"])
        self.model.fit(np.asarray(X, np.float32), np.asarray(y, np.int64), batch_size=batch_size,
                       epochs=initial_epoch + epochs, initial_epoch=initial_epoch, class_weight=class_weight,
                       callbacks=list(callbacks), shuffle=True, verbose=0)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X)
        if X.ndim != 4 or X.shape[1:] != (self.input_dim, self.input_dim, 3):
            raise ValueError(f"the fine-tuned model needs face crops of shape (N, {self.input_dim}, {self.input_dim}, 3); "
                             f"got {X.shape}.")
        if not len(X):
            return np.zeros((0, self.n_classes), np.float32)
        chunks = [np.asarray(self.model.predict_on_batch(X[i:i + PREDICT_BATCH].astype(np.float32)))
                  for i in range(0, len(X), PREDICT_BATCH)]
        return np.concatenate(chunks).astype(np.float32)

    def _save_weights(self, directory: Path) -> None:
        self.model.save(directory / KERAS_FILE)

    @classmethod
    def _load_weights(cls, directory: Path, input_dim: int, n_classes: int) -> FinetunedHead:
        import core.pipeline.backbones._vggface_layers  # noqa: F401 - registers the preprocessing layer the model holds

        return cls(input_dim, n_classes, load_keras_model(directory / KERAS_FILE))


HEADS.register(Entry(
    name=FinetunedHead.kind,
    label="Fine-tuned network",
    factory=FinetunedHead,
    description="The face CNN itself retrained on the dataset's crops, with a new softmax over the people.",
))
