"""Classification metrics on one split: accuracy, per-person precision/recall/F1, confusion matrix.

Photos of people the model does not know are counted apart, never scored as mistakes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from core.training.heads import Head, check_embeddings


def encode_labels(y: Sequence[str], labels: Sequence[str]) -> np.ndarray:
    """Class indices of ``y`` in ``labels``; names not in ``labels`` become -1."""
    index = {name: i for i, name in enumerate(labels)}
    return np.array([index.get(str(name), -1) for name in y], dtype=np.int64)


def people_to_learn(names: Iterable[str], split: str = "the train split") -> list[str]:
    """The people a model will tell apart, sorted; a ValueError when there are fewer than two.

    Every way into training asks (the Train page before embedding, each training mode on its
    data), so the refusal reads the same everywhere.
    """
    people = sorted({str(name) for name in names})
    if len(people) < 2:
        raise ValueError(f"training needs at least two people; {split} only has {people[0]!r}." if people
                         else f"training needs at least two people; {split} has none.")
    return people


def class_weights(y: np.ndarray, n_classes: int) -> dict[int, float]:
    """Balanced weights n / (C · count_c): each class adds the same total weight to the loss."""
    counts = np.bincount(y, minlength=n_classes)
    return {c: float(len(y) / (n_classes * counts[c])) for c in range(n_classes) if counts[c]}


def check_split(X: Any, y: Sequence[str], what: str, dim: int | None = None) -> tuple[np.ndarray, list[str]]:
    X = check_embeddings(X, f"{what} embeddings", dim)
    names = [str(name) for name in y]
    if len(names) != len(X):
        raise ValueError(f"{what}: {len(X)} embeddings but {len(names)} labels.")
    return X, names


def known_only(X: np.ndarray, y: list[str], labels: list[str]) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Rows whose person the head knows, and a count of the photos of people it does not know."""
    codes = encode_labels(y, labels)
    unknown: dict[str, int] = {}
    for name, code in zip(y, codes):
        if code < 0:
            unknown[name] = unknown.get(name, 0) + 1
    return X[codes >= 0], codes[codes >= 0], unknown


def unknown_note(unknown: dict[str, int], what: str) -> str:
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
    X, names = check_split(X, y, "evaluation", head.input_dim)
    X, codes, unknown = known_only(X, names, labels)
    if not len(X):
        raise ValueError("nothing to evaluate: the split has no photos of the people this model knows.")
    metrics = classification_metrics(codes, head.predict(X), labels)
    metrics["unknown"] = unknown
    return metrics
