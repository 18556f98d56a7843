"""Training a head on embeddings: plain arrays in (embeddings and person names per split), a result out.

Training does not depend on how the embeddings were made; the train service feeds it a
dataset's embeddings, tests feed it synthetic clusters.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from core.training.config import EpochCallback, StopCheck, TrainConfig, TrainResult
from core.training.heads import head_class, make_head
from core.training.metrics import (
    check_split,
    class_weights,
    classification_metrics,
    encode_labels,
    known_only,
    people_to_learn,
    unknown_note,
)
from core.training.monitor import Monitor, keras_callback, split_logs


def _seed(config: TrainConfig) -> None:
    """Seed every random source a Keras head uses (initial weights, shuffling, dropout) for repeatable runs.

    The seed is process-wide, so two trainings running at once in one server are not repeatable.
    """
    if head_class(config.head).uses_keras:
        import keras

        keras.utils.set_random_seed(config.seed)


def train_head(config: TrainConfig, X_train: Any, y_train: Sequence[str], X_val: Any = None,
               y_val: Sequence[str] | None = None, *, on_epoch: EpochCallback | None = None,
               should_stop: StopCheck | None = None) -> TrainResult:
    """Train the configured head on embeddings and person names; validation split optional.

    ``on_epoch(epoch, logs)`` is called after every epoch (0-based; logs hold the HISTORY_KEYS
    present); ``should_stop()`` is polled after every batch and ends training cleanly, keeping
    the best weights so far. The best epoch is the lowest validation loss, or the lowest
    training loss without a validation set.
    """
    config.validate()
    if config.mode != "head":
        raise ValueError(f"train_head trains heads on embeddings; mode '{config.mode}' goes through train_on_dataset.")
    X_train, names = check_split(X_train, y_train, "train")
    if not len(X_train):
        raise ValueError("the train split is empty: no embeddings to learn from.")
    labels = people_to_learn(names)
    y_codes = encode_labels(names, labels)

    warnings: list[str] = []
    unknown: dict[str, int] = {}
    X_known = np.zeros((0, X_train.shape[1]), np.float32)
    val_codes = np.zeros(0, np.int64)
    if X_val is not None:
        X_checked, val_names = check_split(X_val, y_val if y_val is not None else [], "validation", X_train.shape[1])
        X_known, val_codes, unknown = known_only(X_checked, val_names, labels)
        if unknown:
            warnings.append(unknown_note(unknown, "validation"))
    has_val = len(X_known) > 0

    start = time.perf_counter()
    _seed(config)
    head = make_head(config.head, X_train.shape[1], len(labels))
    monitor = Monitor(has_val, config.early_stopping_patience, on_epoch, should_stop)
    weights = class_weights(y_codes, len(labels)) if config.class_weighting == "balanced" else None
    if head.iterative:
        head.fit(X_train, y_codes, epochs=config.epochs, batch_size=config.batch_size,
                 learning_rate=config.learning_rate, class_weight=weights,
                 callbacks=[keras_callback(monitor, head, X_known, val_codes)])
    else:
        head.fit(X_train, y_codes)
        logs = split_logs(head, X_train, y_codes)
        if has_val:
            logs.update(split_logs(head, X_known, val_codes, "val_"))
        monitor.record(0, logs)
    seconds = time.perf_counter() - start

    metrics = None
    if has_val:
        metrics = classification_metrics(val_codes, head.predict(X_known), labels)
        metrics["unknown"] = unknown
    return TrainResult(head=head, labels=labels, history=monitor.history, metrics=metrics, seconds=seconds,
                       epochs_run=len(monitor.history["loss"]), stopped=monitor.stopped,
                       best_epoch=monitor.best_epoch, warnings=warnings)
