"""The ``softmax`` head: multinomial logistic regression on normalised embeddings, with a small L2 penalty."""

from __future__ import annotations

from typing import Any

from core.registry import Entry
from core.training.heads import HEADS
from core.training.heads._keras import KerasHead


class SoftmaxHead(KerasHead):
    kind = "softmax"

    @staticmethod
    def layers(keras: Any, x: Any, n_classes: int) -> Any:
        return keras.layers.Dense(n_classes, activation="softmax", kernel_regularizer=keras.regularizers.L2(1e-4),
                                  name="classes")(x)


HEADS.register(Entry(
    name=SoftmaxHead.kind,
    label="Softmax (logistic regression)",
    factory=SoftmaxHead,
    description="One dense softmax layer on normalised embeddings; fast, strong with good embeddings.",
))
