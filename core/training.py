"""Training a recogniser from embeddings: one code path shared by the CLI and the Train page.

Input is plain arrays (embeddings and person names per split), so training does not depend
on how the embeddings were made. End-to-end fine-tuning (``mode="finetune"``) lives in
``core.finetune`` and reuses this module's monitor, callbacks and metrics;
``train_on_dataset`` runs either mode from a dataset folder for the CLI and the Train page.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from core.heads import HEAD_KINDS, Head, KerasHead, check_embeddings, make_head

CLASS_WEIGHTINGS = ("balanced", "none")
MODES = ("head", "finetune")
HISTORY_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy")

EpochCallback = Callable[[int, dict[str, float]], None]
StopCheck = Callable[[], bool]


@dataclass
class TrainConfig:
    """Everything that decides a training run; saved with the run so it can be reproduced and explained."""

    head: str = "softmax"
    epochs: int = 100
    batch_size: int = 32
    learning_rate: float = 1e-3
    seed: int = 0
    class_weighting: str = "balanced"  # "balanced": every person counts equally however many photos they have
    early_stopping_patience: int = 10  # epochs without a better monitored loss before stopping; 0 disables
    mode: str = "head"  # "head": a head on fixed embeddings; "finetune": VGGFace16 end to end on crops
    # Fine-tuning only (see core.finetune): epochs with the pretrained network frozen, how many conv
    # blocks to unfreeze from the top afterwards, and whether to augment the crops.
    warmup_epochs: int = 2
    finetune_blocks: int = 1
    augment: bool = True
    # Context filled by the caller, stored for provenance and cache checks; not used by training itself.
    dataset: str = ""
    dataset_fingerprint: str = ""
    detector: str = ""
    align: bool = True
    backbone: str = ""
    weights_id: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        """Raise a ValueError naming the first setting that cannot work."""
        if self.head not in HEAD_KINDS:
            raise ValueError(f"unknown head '{self.head}'; choose one of: {', '.join(HEAD_KINDS)}")
        if self.mode not in MODES:
            raise ValueError(f"unknown mode '{self.mode}'; choose one of: {', '.join(MODES)}")
        if self.class_weighting not in CLASS_WEIGHTINGS:
            raise ValueError(f"class_weighting must be one of {', '.join(CLASS_WEIGHTINGS)}; got '{self.class_weighting}'.")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be at least 1; got {self.epochs} and {self.batch_size}.")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive; got {self.learning_rate}.")
        if self.early_stopping_patience < 0:
            raise ValueError(f"early_stopping_patience cannot be negative; got {self.early_stopping_patience}.")
        if self.warmup_epochs < 0 or not 0 <= self.finetune_blocks <= 5:
            raise ValueError(f"warmup_epochs must be ≥ 0 and finetune_blocks between 0 and 5; got "
                             f"{self.warmup_epochs} and {self.finetune_blocks}.")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Rebuild a saved configuration; keys this version does not know are kept in ``extra``."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["extra"] = {**dict(values.get("extra") or {}), **{k: v for k, v in data.items() if k not in known}}
        return cls(**values)


@dataclass
class TrainResult:
    """A trained head and everything the page and the run store show about how it got there."""

    head: Head
    labels: list[str]  # class index → person name (sorted)
    history: dict[str, list[float]]  # per epoch: loss, accuracy and, with a validation set, val_loss, val_accuracy
    metrics: dict[str, Any] | None  # on the validation split; None without one
    seconds: float
    epochs_run: int
    stopped: bool  # the user stopped it; the head holds the best weights seen so far
    best_epoch: int  # 0-based epoch whose weights the head holds
    warnings: list[str] = field(default_factory=list)


def encode_labels(y: Sequence[str], labels: Sequence[str]) -> np.ndarray:
    """Class indices of ``y`` in ``labels``; names not in ``labels`` become -1."""
    index = {name: i for i, name in enumerate(labels)}
    return np.array([index.get(str(name), -1) for name in y], dtype=np.int64)


def class_weights(y: np.ndarray, n_classes: int) -> dict[int, float]:
    """Balanced weights n / (C · count_c): each class adds the same total weight to the loss."""
    counts = np.bincount(y, minlength=n_classes)
    return {c: float(len(y) / (n_classes * counts[c])) for c in range(n_classes) if counts[c]}


def _check_split(X: Any, y: Sequence[str], what: str, dim: int | None = None) -> tuple[np.ndarray, list[str]]:
    X = check_embeddings(X, f"{what} embeddings", dim)
    names = [str(name) for name in y]
    if len(names) != len(X):
        raise ValueError(f"{what}: {len(X)} embeddings but {len(names)} labels.")
    return X, names


def _known_only(X: np.ndarray, y: list[str], labels: list[str]) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Rows whose person the head knows, and a count of the photos of people it does not know."""
    codes = encode_labels(y, labels)
    unknown: dict[str, int] = {}
    for name, code in zip(y, codes):
        if code < 0:
            unknown[name] = unknown.get(name, 0) + 1
    return X[codes >= 0], codes[codes >= 0], unknown


def _unknown_note(unknown: dict[str, int], what: str) -> str:
    people = ", ".join(f"{name} ({count})" for name, count in sorted(unknown.items()))
    return (f"{what} has {sum(unknown.values())} photo(s) of {len(unknown)} person(s) not in train, "
            f"left out of its metrics: {people}")


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
    """Accuracy, per-class precision/recall/F1/support and the confusion matrix (rows true, columns predicted).

    Precision of a class never predicted, and recall of a class absent from ``y_true``, are 0.
    """
    n = len(labels)
    confusion = np.zeros((n, n), dtype=np.int64)
    np.add.at(confusion, (y_true, y_pred), 1)
    true_pos = np.diag(confusion).astype(np.float64)
    predicted, support = confusion.sum(axis=0), confusion.sum(axis=1)
    precision = np.divide(true_pos, predicted, out=np.zeros(n), where=predicted > 0)
    recall = np.divide(true_pos, support, out=np.zeros(n), where=support > 0)
    denominator = precision + recall
    f1 = np.divide(2 * precision * recall, denominator, out=np.zeros(n), where=denominator > 0)
    present = support > 0
    return {
        "accuracy": float(true_pos.sum() / len(y_true)) if len(y_true) else 0.0,
        "n": int(len(y_true)),
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "labels": list(labels),
        "per_class": {
            name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                   "support": int(support[i])}
            for i, name in enumerate(labels)
        },
        "confusion": confusion.tolist(),
    }


def evaluate(head: Head, labels: Sequence[str], X: Any, y: Sequence[str]) -> dict[str, Any]:
    """Metrics of ``head`` on one split; photos of people the head does not know are counted in ``unknown``."""
    labels = list(labels)
    X, names = _check_split(X, y, "evaluation", head.input_dim)
    X, codes, unknown = _known_only(X, names, labels)
    if not len(X):
        raise ValueError("nothing to evaluate: the split has no photos of the people this model knows.")
    metrics = classification_metrics(codes, head.predict(X), labels)
    metrics["unknown"] = unknown
    return metrics


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


def _split_logs(head: Head, X: np.ndarray, y: np.ndarray, prefix: str = "") -> dict[str, float]:
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
                logs.update(_split_logs(head, X_val, y_val, "val_"))
            improved, patience_over = monitor.record(epoch, logs)
            if improved:
                self.best_weights = self.model.get_weights()
            if patience_over or monitor.check_stop():
                self.model.stop_training = True

        def on_train_end(self, logs: dict | None = None) -> None:
            if self.best_weights is not None:
                self.model.set_weights(self.best_weights)

    return MonitorCallback()


def _seed(config: TrainConfig) -> None:
    """Seed every random source a Keras head uses (initial weights, shuffling, dropout) for repeatable runs.

    The seed is process-wide, so two trainings running at once in one server are not repeatable.
    """
    if config.head in KerasHead.BUILDERS:
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
    X_train, names = _check_split(X_train, y_train, "train")
    if not len(X_train):
        raise ValueError("the train split is empty: no embeddings to learn from.")
    labels = sorted(set(names))
    if len(labels) < 2:
        raise ValueError(f"training needs at least two people; the train split only has {labels[0]!r}.")
    y_codes = encode_labels(names, labels)

    warnings: list[str] = []
    unknown: dict[str, int] = {}
    X_known = np.zeros((0, X_train.shape[1]), np.float32)
    val_codes = np.zeros(0, np.int64)
    if X_val is not None:
        X_checked, val_names = _check_split(X_val, y_val if y_val is not None else [], "validation", X_train.shape[1])
        X_known, val_codes, unknown = _known_only(X_checked, val_names, labels)
        if unknown:
            warnings.append(_unknown_note(unknown, "validation"))
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
        logs = _split_logs(head, X_train, y_codes)
        if has_val:
            logs.update(_split_logs(head, X_known, val_codes, "val_"))
        monitor.record(0, logs)
    seconds = time.perf_counter() - start

    metrics = None
    if has_val:
        metrics = classification_metrics(val_codes, head.predict(X_known), labels)
        metrics["unknown"] = unknown
    return TrainResult(head=head, labels=labels, history=monitor.history, metrics=metrics, seconds=seconds,
                       epochs_run=len(monitor.history["loss"]), stopped=monitor.stopped,
                       best_epoch=monitor.best_epoch, warnings=warnings)


def _largest_crops(root: Path, paths: Sequence[str], pipeline: Any) -> np.ndarray:
    """Aligned crops of each photo's largest face (fine-tuning learns from pixels, not embeddings)."""
    from core.images import load_image

    crops = [pipeline.faces(load_image(root / path))[0][1].crop for path in paths]
    size = pipeline.backbone.input_size
    return np.stack(crops) if crops else np.zeros((0, size, size, 3), np.uint8)


def train_on_dataset(root: Path | str, pipeline: Any, config: TrainConfig, *, progress: Callable[[int, int], None] | None = None,
                     on_epoch: EpochCallback | None = None, should_stop: StopCheck | None = None,
                     name: str | None = None) -> tuple[Any, TrainResult, dict[str, Any]]:
    """Embed (or crop) a dataset, train in the configured mode, evaluate on test, save a run.

    Returns (RunInfo, TrainResult, report); the report lists photos skipped per split (no face,
    unreadable) and those whose largest face was used among several — nothing is dropped silently.
    """
    from core.dataset import fingerprint, scan
    from core.embeddings import embed_dataset
    from core.prediction import calibrate_max_distance
    from core.runs import save_run

    config.validate()
    dataset = scan(root)
    config.dataset, config.dataset_fingerprint = str(dataset.root), fingerprint(dataset)
    config.detector, config.align = pipeline.detector.name, pipeline.align
    config.extra["detector_settings"] = dict(pipeline.detector.settings)
    config.backbone, config.weights_id = pipeline.backbone.name, pipeline.backbone.weights_id
    if config.mode == "finetune" and not pipeline.backbone.fine_tunable:
        raise ValueError(f"the {pipeline.backbone.name} backbone cannot be fine-tuned; use mode 'head'.")
    splits = embed_dataset(dataset.root, pipeline, progress=progress)
    train = splits.get("train")
    if train is None or not train.paths:
        raise ValueError("the train split has no photo with a face: nothing to learn from.")
    val, test = splits.get("validation"), splits.get("test")
    report = {name_: {"photos": s.photos, "used": len(s.paths), "no_face": s.no_face, "errors": s.errors,
                      "many_faces": s.many_faces} for name_, s in splits.items()}
    if config.mode == "finetune":
        from core.finetune import train_finetune

        size = pipeline.backbone.input_size
        crops_val = _largest_crops(dataset.root, val.paths, pipeline) if val else np.zeros((0, size, size, 3), np.uint8)
        result = train_finetune(config, _largest_crops(dataset.root, train.paths, pipeline), train.labels, crops_val,
                                val.labels if val else [], pipeline.backbone.model, on_epoch=on_epoch,
                                should_stop=should_stop)
    else:
        result = train_head(config, train.embeddings, train.labels, val.embeddings if val else None,
                            val.labels if val else None, on_epoch=on_epoch, should_stop=should_stop)
    test_metrics = None
    if test is not None and test.paths and all(label is not None for label in test.labels):
        inputs = _largest_crops(dataset.root, test.paths, pipeline) if config.mode == "finetune" else test.embeddings
        codes = encode_labels(test.labels, result.labels)
        known = codes >= 0
        if known.any():
            test_metrics = classification_metrics(codes[known], result.head.predict(inputs[known]), result.labels)
            test_metrics["no_face"] = len(test.no_face)
    max_distance = calibrate_max_distance(train.embeddings, train.labels, val.embeddings, val.labels) if val else None
    extras = {"train_embeddings": train.embeddings, "train_labels": np.array(train.labels, dtype=str),
              "train_paths": np.array(train.paths, dtype=str),
              "unknown_max_distance": np.float32(np.nan if max_distance is None else max_distance)}
    info = save_run(result, config, extras, name=name, test_metrics=test_metrics)
    return info, result, report
