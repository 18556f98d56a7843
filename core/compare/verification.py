"""The same-person decision: two embeddings, thresholds (calibrated or default), a verdict.

It sits above :mod:`core.compare.calibration` because a verdict uses a calibration's
thresholds and confidence fit; calibration itself only needs distances.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from core.compare.calibration import Calibration
from core.compare.distances import METRICS, ZERO_NORM, as_vector, check_metric, distances, logistic_confidence

# Uncalibrated thresholds that favour neither answer: cosine distance 0.5 is an angle of 60°
# between embeddings, and euclidean_l2 = sqrt(2 * cosine distance) makes 1.0 the same angle.
NEUTRAL_THRESHOLDS: dict[str, float] = {"cosine": 0.5, "euclidean_l2": 1.0}




# Uncalibrated confidence is a logistic in distance/threshold that is 0.5 at the threshold;
# this steepness makes it about 0.99 at half the threshold and 0.01 at 1.5 times it.
_DEFAULT_STEEPNESS = 10.0


def default_thresholds(e1: np.ndarray, e2: np.ndarray, defaults: Mapping[str, float] | None = None) -> dict[str, float]:
    """Thresholds to use without a calibration: the caller's per-backbone ``defaults``, else neutral ones.

    Raw euclidean distance has no scale-free default (it grows with the embeddings' length),
    so its neutral default is the euclidean_l2 one scaled by the two vectors' geometric-mean
    length: for equal-length vectors the three metrics then give the same answer.
    """
    chosen = dict(defaults or {})
    for metric, value in chosen.items():
        check_metric(metric)
        if not np.isfinite(value) or value <= 0:
            raise ValueError(f"default threshold for {metric} must be a positive number, got {value}")
    scale = float(np.sqrt(np.linalg.norm(e1) * np.linalg.norm(e2)))
    neutral = {**NEUTRAL_THRESHOLDS, "euclidean": NEUTRAL_THRESHOLDS["euclidean_l2"] * max(scale, ZERO_NORM)}
    return {metric: float(chosen.get(metric, neutral[metric])) for metric in METRICS}


@dataclass(frozen=True)
class Verdict:
    """The answer to "same person?" with everything the Verify page shows about how it was reached.

    ``confidence`` is P(same person | distance on ``metric``). With a calibration it comes
    from a logistic fit on that dataset's genuine and impostor distances (equal priors); with
    defaults (``threshold_source == "default"``) it is only a rough guide: 0.5 at the
    threshold, falling smoothly either side. A threshold chosen at a target false-accept rate
    need not sit where confidence is 0.5, so a verified pair can show confidence below 0.5.
    """

    verified: bool
    metric: str  # the metric that decided
    distance: float  # on ``metric``
    threshold: float  # on ``metric``
    confidence: float  # in [0, 1]
    distances: dict[str, float]
    thresholds: dict[str, float]
    threshold_source: str  # "calibrated" or "default"

    def to_dict(self) -> dict:
        """JSON-ready form (for the CLI)."""
        return asdict(self)


def verify(e1: np.ndarray | Sequence, e2: np.ndarray | Sequence, calibration: Calibration | None = None,
           defaults: Mapping[str, float] | None = None, metric: str | None = None) -> Verdict:
    """Decide whether two embeddings show the same person.

    The deciding metric is ``metric`` if given, else the calibration's chosen metric, else
    cosine. Thresholds come from ``calibration`` when there is one (``defaults`` is then
    ignored), otherwise from ``defaults`` (a backbone's declared ``default_thresholds``) topped up with neutral values; a distance equal to the threshold is
    accepted.
    """
    a, b = as_vector(e1, "first embedding"), as_vector(e2, "second embedding")
    measured = distances(a, b)
    if calibration is not None:
        if calibration.embedding_dim != a.size:
            raise ValueError(
                f"the calibration was made with {calibration.embedding_dim}-long embeddings, these are {a.size}-long"
            )
        primary = metric or calibration.metric
        check_metric(primary)
        thresholds, source = dict(calibration.thresholds), "calibrated"
        confidence = calibration.confidence(primary, measured[primary])
    else:
        primary = metric or "cosine"
        check_metric(primary)
        thresholds, source = default_thresholds(a, b, defaults), "default"
        steepness = _DEFAULT_STEEPNESS / thresholds[primary]
        confidence = logistic_confidence(measured[primary], _DEFAULT_STEEPNESS, -steepness)
    return Verdict(
        verified=bool(measured[primary] <= thresholds[primary]),
        metric=primary,
        distance=measured[primary],
        threshold=thresholds[primary],
        confidence=confidence,
        distances=measured,
        thresholds=thresholds,
        threshold_source=source,
    )
