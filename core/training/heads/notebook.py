"""The ``notebook`` head: the head of the classic VGG-Face fine-tuning notebook, sized for the class.

Dense → BatchNorm → tanh → Dropout, twice, then softmax. The notebook used widths 100 and 10;
a 10-wide bottleneck is narrower than the number of people in most class datasets and costs
accuracy (90.5 % against 97.8 % for logistic regression on 23 people), so the widths grow with
the number of classes: w1 = max(100, 4·C), w2 = max(10, 2·C).
"""

from __future__ import annotations

from typing import Any

from core.registry import Entry
from core.training.heads import HEADS
from core.training.heads._keras import KerasHead


class NotebookHead(KerasHead):
    kind = "notebook"

    @staticmethod
    def layers(keras: Any, x: Any, n_classes: int) -> Any:
        layers = keras.layers
        for index, (width, dropout) in enumerate(((max(100, 4 * n_classes), 0.3), (max(10, 2 * n_classes), 0.2)), 1):
            x = layers.Dense(width, name=f"dense{index}")(x)
            x = layers.BatchNormalization(name=f"bn{index}")(x)
            x = layers.Activation("tanh", name=f"tanh{index}")(x)
            x = layers.Dropout(dropout, name=f"dropout{index}")(x)
        return layers.Dense(n_classes, activation="softmax", name="classes")(x)


HEADS.register(Entry(
    name=NotebookHead.kind,
    label="Two hidden layers (VGG-Face notebook)",
    factory=NotebookHead,
    description="Dense → BatchNorm → tanh → Dropout twice, then softmax; widths grow with the number of people.",
))
