"""Per-epoch bookkeeping shared by every trainable head and by fine-tuning: history, best epoch, stop.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from core.training.config import HISTORY_KEYS, EpochCallback, StopCheck
from core.training.heads import Head


class Monitor:
    """Per-epoch bookkeeping shared by every head and training mode: history, live callback, best epoch, stops."""

    def __init__(self, has_val: bool, patience: int, on_epoch: EpochCallback | None, should_stop: StopCheck | None) -> None:
        self.key = "val_loss" if has_val else "loss"
        self.keys = HISTORY_KEYS if has_val else HISTORY_KEYS[:2]
        self.history: dict[str, list[float]] = {key: [] for key in self.keys}
        self.patience = patience
        self.on_epoch = on_epoch
        self.should_stop = should_stop or (lambda: False)
        self.best = np.inf
        self.best_epoch = 0
        self.stopped = False

    def record(self, epoch: int, logs: dict[str, Any]) -> tuple[bool, bool]:
        """Store one epoch's figures; returns (is it the new best, has patience run out)."""
        clean = {key: float(logs[key]) for key in self.keys}
        for key, value in clean.items():
            self.history[key].append(value)
        if self.on_epoch is not None:
            self.on_epoch(epoch, clean)
        improved = clean[self.key] < self.best
        if improved:
            self.best, self.best_epoch = clean[self.key], epoch
        return improved, self.patience > 0 and epoch - self.best_epoch >= self.patience

    def check_stop(self) -> bool:
        """Poll the user's stop request; once asked, it stays stopped."""
        if not self.stopped and self.should_stop():
            self.stopped = True
        return self.stopped


def split_logs(head: Head, X: np.ndarray, y: np.ndarray, prefix: str = "") -> dict[str, float]:
    """Mean cross-entropy and accuracy of ``head`` on one split (unweighted, no regularisation term)."""
    proba = head.predict_proba(X)
    picked = np.clip(proba[np.arange(len(y)), y], 1e-7, 1.0)
    return {f"{prefix}loss": float(-np.log(picked).mean()),
            f"{prefix}accuracy": float((proba.argmax(axis=1) == y).mean())}


def keras_callback(monitor: Monitor, head: Head, X_val: np.ndarray, y_val: np.ndarray) -> Any:
    """A Keras callback that adds validation figures, reports each epoch, keeps the best weights and honours stops.

    It works for any head whose ``model`` is a Keras model and may span several ``fit`` calls
    (e.g. warm-up then fine-tuning): each call ends on the best weights seen so far.

    Validation is scored with the head's own predict_proba on the (small) validation matrix:
    Keras's per-epoch evaluate() cost more than the training epoch itself.
    """
    import keras

    class MonitorCallback(keras.callbacks.Callback):
        best_weights: list[np.ndarray] | None = None

        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            if monitor.check_stop():
                self.model.stop_training = True

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            logs = dict(logs or {})
            if len(X_val):
                logs.update(split_logs(head, X_val, y_val, "val_"))
            improved, patience_over = monitor.record(epoch, logs)
            if improved:
                self.best_weights = self.model.get_weights()
            if patience_over or monitor.check_stop():
                self.model.stop_training = True

        def on_train_end(self, logs: dict | None = None) -> None:
            if self.best_weights is not None:
                self.model.set_weights(self.best_weights)

    return MonitorCallback()
