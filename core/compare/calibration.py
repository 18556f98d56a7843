"""Threshold calibration: learn from a labelled set of embeddings where "same person" ends.

A backbone's distances mean nothing on their own: 0.4 may be a near-certain match for
one network and a stranger for another. Calibration measures the distances between
photos of the same person (genuine pairs) and of different people (impostor pairs), draws
the ROC curve, and picks the threshold at the equal-error rate or at a target false-accept
rate. Distances at or below a threshold are accepted as the same person. The metric that
decides is the one these pairs separate best (:func:`choose_metric`), stored with the calibration.

The result is stored per context (dataset fingerprint and name, detector, alignment, backbone,
weights), because a threshold is only valid for the pipeline that produced it, in the current
workspace's calibrations folder (``core.config.calibrations_dir``): one user's calibration never
changes another's verdicts.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from core.compare.distances import METRICS, as_matrix, check_metric, logistic_confidence, pair_distances
from core.config import calibrations_dir
from core.files import write_json_atomic

FORMAT_VERSION = 1
TOO_FEW_MESSAGE = "calibration needs at least two photos of one person and two people"

# Impostor pairs outnumber genuine ones quadratically; a sample of this size pins low
# false-accept rates down well enough while keeping calibration fast.
MIN_IMPOSTOR = 2000
IMPOSTOR_PER_GENUINE = 5
DEFAULT_MAX_IMPOSTOR = 20_000

HISTOGRAM_BINS = 40
ROC_POINTS = 200  # the stored ROC curve is thinned to this many points for plotting
_ENUMERATE_LIMIT = 2_000_000  # up to this many pairs in all, impostors are drawn from a full list
_RIDGE = 1e-3  # keeps the logistic slope finite when genuine and impostor distances do not overlap
# The metrics a calibration chooses its deciding one from. euclidean_l2 = sqrt(2·cosine) ranks every pair as cosine
# does (the same ROC, the same EER), so it is no third candidate.
DECISION_CANDIDATES = ("cosine", "euclidean")

ContextValue = str | int | float | bool | None


# ---------------------------------------------------------------- pairs

def _codes(labels: Sequence[Hashable]) -> np.ndarray:
    """Integer code per label, in order of first appearance (works for any hashable labels)."""
    index: dict[Hashable, int] = {}
    return np.array([index.setdefault(label, len(index)) for label in labels], dtype=np.int64)


def pairs(labels: Sequence[Hashable], max_impostor: int = DEFAULT_MAX_IMPOSTOR,
          seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i < j) to compare: every genuine pair, and a deterministic sample of impostor pairs.

    The impostor sample holds max(MIN_IMPOSTOR, IMPOSTOR_PER_GENUINE × genuine) pairs, capped
    by ``max_impostor`` and by how many exist. Both arrays have shape (k, 2), rows sorted.
    """
    if max_impostor < 1:
        raise ValueError(f"max_impostor must be at least 1, got {max_impostor}")
    codes = _codes(labels)
    counts = np.bincount(codes)
    genuine = [np.empty((0, 2), dtype=np.int64)]
    for code in range(len(counts)):
        members = np.flatnonzero(codes == code)
        first, second = np.triu_indices(len(members), 1)
        genuine.append(np.column_stack([members[first], members[second]]))
    genuine_pairs = np.concatenate(genuine)
    if len(counts) < 2 or len(genuine_pairs) == 0:
        raise ValueError(
            f"{TOO_FEW_MESSAGE} (got {len(codes)} photos of {len(counts)} people, "
            f"the largest group has {int(counts.max(initial=0))})"
        )
    genuine_pairs = genuine_pairs[np.lexsort((genuine_pairs[:, 1], genuine_pairs[:, 0]))]
    n = len(codes)
    total_impostor = (n * (n - 1) - int((counts * (counts - 1)).sum())) // 2
    target = min(total_impostor, max_impostor, max(MIN_IMPOSTOR, IMPOSTOR_PER_GENUINE * len(genuine_pairs)))
    return genuine_pairs, _impostor_sample(codes, target, np.random.default_rng(seed))


def _impostor_sample(codes: np.ndarray, target: int, rng: np.random.Generator) -> np.ndarray:
    n = len(codes)
    if n * (n - 1) // 2 <= _ENUMERATE_LIMIT:
        first, second = np.triu_indices(n, 1)
        different = codes[first] != codes[second]
        candidates = np.column_stack([first[different], second[different]])
        chosen = np.sort(rng.choice(len(candidates), size=target, replace=False))
        return candidates[chosen]
    # Too many pairs to list: draw at random, drop same-person pairs and repeats, keep draw order.
    keys = np.empty(0, dtype=np.int64)
    while len(keys) < target:
        first, second = rng.integers(0, n, (2, 2 * (target - len(keys)) + 16))
        low, high = np.minimum(first, second), np.maximum(first, second)
        fresh = (low * n + high)[(low != high) & (codes[low] != codes[high])]
        merged = np.concatenate([keys, fresh])
        _, first_seen = np.unique(merged, return_index=True)
        keys = merged[np.sort(first_seen)][:target]
    keys = np.sort(keys)
    return np.column_stack([keys // n, keys % n])


# ---------------------------------------------------------------- ROC, AUC, EER

def _distance_array(values: np.ndarray | Sequence[float], name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).ravel()
    if array.size == 0:
        raise ValueError(f"no {name} distances")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} distances contain NaN or infinite values")
    return array


@dataclass(frozen=True)
class Roc:
    """False-accept and true-accept rates when accepting distances ≤ each threshold (thresholds ascending).

    The first point lies just below every distance (nothing accepted: FAR = TAR = 0), the
    last at the largest one (everything accepted: FAR = TAR = 1).
    """

    thresholds: np.ndarray
    far: np.ndarray
    tar: np.ndarray


def roc(genuine: np.ndarray | Sequence[float], impostor: np.ndarray | Sequence[float]) -> Roc:
    """The ROC curve with one point per distinct distance."""
    g, i = _distance_array(genuine, "genuine"), _distance_array(impostor, "impostor")
    values = np.unique(np.concatenate([g, i]))
    thresholds = np.concatenate([[np.nextafter(values[0], -np.inf)], values])
    tar = np.searchsorted(np.sort(g), thresholds, side="right") / g.size
    far = np.searchsorted(np.sort(i), thresholds, side="right") / i.size
    return Roc(thresholds, far, tar)


def auc(genuine: np.ndarray | Sequence[float], impostor: np.ndarray | Sequence[float]) -> float:
    """Area under the ROC curve: P(genuine distance < impostor distance), ties counting one half.

    Computed from average ranks (Mann–Whitney U), so it is exact with tied distances and
    equals the trapezoid area under :func:`roc`.
    """
    g, i = _distance_array(genuine, "genuine"), _distance_array(impostor, "impostor")
    _, inverse, counts = np.unique(np.concatenate([g, i]), return_inverse=True, return_counts=True)
    average_rank = np.cumsum(counts) - (counts - 1) / 2.0
    impostor_rank_sum = average_rank[inverse][g.size:].sum()
    return float((impostor_rank_sum - i.size * (i.size + 1) / 2) / (g.size * i.size))


def _between(low: float, high: float) -> float:
    """A threshold in [low, high): their midpoint, or ``low`` when the two are adjacent floats."""
    middle = (low + high) / 2
    return float(middle if middle < high else low)


def eer(genuine: np.ndarray | Sequence[float], impostor: np.ndarray | Sequence[float]) -> tuple[float, float]:
    """Equal-error rate and its threshold: where false accepts equal false rejects.

    Linear interpolation between the two ROC points around the crossing; when the rates are
    equal over a range of thresholds (e.g. perfectly separated distances), the middle of it.
    """
    curve = roc(genuine, impostor)
    gap = curve.far - (1.0 - curve.tar)  # rises from -1 (nothing accepted) to 1 (everything accepted)
    k = int(np.argmax(gap >= 0))
    if gap[k] == 0:
        end = k + int(np.argmax(gap[k:] > 0))
        return float(curve.far[k]), _between(curve.thresholds[k], curve.thresholds[end])
    alpha = -gap[k - 1] / (gap[k] - gap[k - 1])
    rate = curve.far[k - 1] + alpha * (curve.far[k] - curve.far[k - 1])
    threshold = curve.thresholds[k - 1] + alpha * (curve.thresholds[k] - curve.thresholds[k - 1])
    return float(rate), float(threshold)


def _check_target_far(target_far: float) -> None:
    if not 0.0 <= target_far <= 1.0:
        raise ValueError(f"target false-accept rate must be between 0 and 1, got {target_far}")


def threshold_at_far(genuine: np.ndarray | Sequence[float], impostor: np.ndarray | Sequence[float],
                     target_far: float) -> float:
    """The threshold accepting the most genuine pairs while the false-accept rate stays ≤ ``target_far``.

    Placed midway to the next distance, where the rates on these pairs are unchanged, so it
    does not sit right on a measured distance.
    """
    _check_target_far(target_far)
    curve = roc(genuine, impostor)
    k = int(np.flatnonzero(curve.far <= target_far)[-1])
    if k + 1 == len(curve.thresholds):
        return float(curve.thresholds[k])
    return _between(curve.thresholds[k], curve.thresholds[k + 1])


def rates_at(genuine: np.ndarray, impostor: np.ndarray, threshold: float) -> tuple[float, float]:
    """(FAR, TAR) when accepting distances ≤ ``threshold``."""
    return float(np.mean(impostor <= threshold)), float(np.mean(genuine <= threshold))


def fit_logistic(genuine: np.ndarray | Sequence[float], impostor: np.ndarray | Sequence[float]) -> tuple[float, float]:
    """(intercept, slope) of P(same | d) = σ(intercept + slope·d), fitted with equal class priors.

    Chosen over a histogram or KDE posterior because it is monotonic by construction,
    defined for every distance (including beyond the calibration data) and stored as two
    numbers. A small ridge on the slope keeps it finite for perfectly separated data.
    Newton's method with step halving on the (convex) weighted log-loss.
    """
    g, i = _distance_array(genuine, "genuine"), _distance_array(impostor, "impostor")
    d = np.concatenate([g, i])
    centre, spread = d.mean(), d.std()
    if spread == 0:
        return 0.0, 0.0  # every distance equal: the distance says nothing
    z = (d - centre) / spread
    y = np.concatenate([np.ones(g.size), np.zeros(i.size)])
    w = np.concatenate([np.full(g.size, 0.5 / g.size), np.full(i.size, 0.5 / i.size)])

    def loss(params: np.ndarray) -> float:
        logits = params[0] + params[1] * z
        return float((w * (np.logaddexp(0, logits) - y * logits)).sum() + _RIDGE / 2 * params[1] ** 2)

    params = np.zeros(2)
    for _ in range(100):
        p = 1.0 / (1.0 + np.exp(-(params[0] + params[1] * z)))
        r, s = w * (p - y), w * p * (1 - p)
        grad = np.array([r.sum(), (r * z).sum() + _RIDGE * params[1]])
        hess = np.array([[s.sum(), (s * z).sum()], [(s * z).sum(), (s * z * z).sum() + _RIDGE]])
        step = np.linalg.solve(hess + 1e-12 * np.eye(2), grad)
        scale, current = 1.0, loss(params)
        while loss(params - scale * step) > current and scale > 1e-6:
            scale /= 2
        params = params - scale * step
        if np.abs(scale * step).max() < 1e-10:
            break
    slope = params[1] / spread
    return float(params[0] - slope * centre), float(slope)


# ---------------------------------------------------------------- the calibration record

@dataclass(frozen=True)
class MetricCalibration:
    """Everything calibration learnt about one metric; lists so it is JSON-ready."""

    threshold: float
    auc: float
    eer: float
    eer_threshold: float
    far: float  # false-accept rate at ``threshold`` on the calibration pairs
    tar: float  # true-accept rate at ``threshold``
    intercept: float  # logistic P(same | d) = σ(intercept + slope·d)
    slope: float
    histogram_edges: list[float]
    genuine_counts: list[int]
    impostor_counts: list[int]
    roc_thresholds: list[float]
    roc_far: list[float]
    roc_tar: list[float]


@dataclass(frozen=True)
class Calibration:
    """A calibrated threshold per metric for one pipeline context, with what the Verify page plots."""

    context: dict[str, ContextValue]
    metric: str  # the metric verification decides on
    target_far: float | None  # None: thresholds at the equal-error rate
    n_people: int
    n_embeddings: int
    embedding_dim: int
    n_genuine: int
    n_impostor: int
    metrics: dict[str, MetricCalibration]
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    # How ``metric`` was chosen: "eer" (the lower EER), "frr" (the fewer false rejects at ``target_far``), "given"
    # (by the caller); None in calibrations stored before FaceLab chose (they decide on the backbone's default).
    metric_chosen_by: str | None = None

    @property
    def thresholds(self) -> dict[str, float]:
        return {name: m.threshold for name, m in self.metrics.items()}

    @property
    def auc(self) -> dict[str, float]:
        return {name: m.auc for name, m in self.metrics.items()}

    @property
    def eer(self) -> dict[str, float]:
        return {name: m.eer for name, m in self.metrics.items()}

    def frr(self, metric: str) -> float:
        """The false-reject rate at ``metric``'s threshold on the calibration pairs (1 − TAR)."""
        return 1.0 - self.metrics[metric].tar

    @property
    def decision(self) -> str:
        """Which metric decides and why, in one line: "decides on cosine: EER 1.7 % vs euclidean 2.1 %"."""
        others = [m for m in DECISION_CANDIDATES if m != self.metric]
        if self.metric_chosen_by == "frr":
            rates = {m: self.frr(m) for m in (self.metric, *others)}
            what = f"same-person pairs rejected at a false-accept rate ≤ {self.target_far:g}"
        else:
            rates, what = {m: self.eer[m] for m in (self.metric, *others)}, "EER"
        own = _percent(rates[self.metric], *(rates[m] for m in others))
        versus = ", ".join(f"{m} {_percent(rates[m], rates[self.metric])}" for m in others)
        if self.metric_chosen_by is None:
            return (f"decides on {self.metric}, the backbone's default ({what} {own} vs {versus}); this calibration "
                    "was made before FaceLab chose the metric by EER: calibrate again to let it choose")
        asked = " (as asked)" if self.metric_chosen_by == "given" else ""
        if self.metric_chosen_by == "frr":
            return f"decides on {self.metric}{asked}: {own} {what} vs {versus}"
        return f"decides on {self.metric}{asked}: {what} {own} vs {versus}"

    def confidence(self, metric: str, distance: float) -> float:
        """P(same person | distance) from this calibration's logistic fit for ``metric``."""
        m = self.metrics[metric]
        return logistic_confidence(distance, m.intercept, m.slope)

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT_VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Calibration:
        """Rebuild from :meth:`to_dict` output; anything malformed is a ValueError."""
        try:
            if data["format"] != FORMAT_VERSION:
                raise ValueError(f"unsupported calibration format {data['format']!r}")
            metrics = {name: MetricCalibration(**data["metrics"][name]) for name in METRICS}
            calibration = cls(
                context=_check_context(data["context"]),
                metric=str(data["metric"]),
                target_far=None if data["target_far"] is None else float(data["target_far"]),
                n_people=int(data["n_people"]),
                n_embeddings=int(data["n_embeddings"]),
                embedding_dim=int(data["embedding_dim"]),
                n_genuine=int(data["n_genuine"]),
                n_impostor=int(data["n_impostor"]),
                metrics=metrics,
                created=str(data["created"]),
                metric_chosen_by=data.get("metric_chosen_by"),  # absent from calibrations stored before the choice
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a valid calibration record ({exc!r})") from exc
        check_metric(calibration.metric)
        if calibration.metric_chosen_by not in (None, *CHOSEN_BY):
            raise ValueError(f"unknown metric_chosen_by {calibration.metric_chosen_by!r}")
        numbers = [value for m in metrics.values() for value in (m.threshold, m.auc, m.eer, m.intercept, m.slope)]
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in numbers):
            raise ValueError("calibration record holds non-numeric or non-finite values")
        return calibration


CHOSEN_BY = ("eer", "frr", "given")


def _percent(rate: float, *others: float) -> str:
    """A rate as "1.7 %", with a second decimal when one decimal would show it equal to one of ``others``."""
    digits = 2 if any(f"{rate:.1%}" == f"{other:.1%}" and rate != other for other in others) else 1
    return f"{100 * rate:.{digits}f} %"


def choose_metric(metrics: Mapping[str, MetricCalibration], target_far: float | None, default: str) -> tuple[str, str]:
    """(the deciding metric, "eer" or "frr"): the candidate with the lower EER, or, at a target false-accept rate,
    the one that falsely rejects fewer same-person pairs there; a tie keeps ``default`` (the backbone's own).

    Why not always the backbone's: on dlib's descriptors cosine had the lower EER on held-out pairs (1.68 % vs
    2.06 %) although dlib documents euclidean (issue 12); what decides should be what separates best here.
    """
    check_metric(default)
    candidates = [default, *(m for m in DECISION_CANDIDATES if m != default)]
    if target_far is None:
        return min(candidates, key=lambda m: metrics[m].eer), "eer"
    return min(candidates, key=lambda m: 1.0 - metrics[m].tar), "frr"


def _check_context(context: Mapping[str, Any]) -> dict[str, ContextValue]:
    """A copy of ``context`` if it is a flat mapping of names to JSON scalars (so it hashes stably)."""
    if not isinstance(context, Mapping):
        raise ValueError(f"calibration context must be a mapping, got {type(context).__name__}")
    for key, value in context.items():
        if not isinstance(key, str):
            raise ValueError(f"calibration context keys must be strings, got {key!r}")
        if not (value is None or isinstance(value, (str, int, bool)) or (isinstance(value, float) and math.isfinite(value))):
            raise ValueError(f"calibration context value for '{key}' must be text, a number, true/false or null, got {value!r}")
    return dict(context)


def _metric_calibration(genuine: np.ndarray, impostor: np.ndarray, target_far: float | None) -> MetricCalibration:
    rate, eer_threshold = eer(genuine, impostor)
    threshold = eer_threshold if target_far is None else threshold_at_far(genuine, impostor, target_far)
    far, tar = rates_at(genuine, impostor, threshold)
    intercept, slope = fit_logistic(genuine, impostor)
    edges = np.histogram_bin_edges(np.concatenate([genuine, impostor]), bins=HISTOGRAM_BINS)
    curve = roc(genuine, impostor)
    keep = np.unique(np.linspace(0, len(curve.thresholds) - 1, ROC_POINTS).round().astype(int))
    return MetricCalibration(
        threshold=float(threshold), auc=auc(genuine, impostor), eer=rate, eer_threshold=eer_threshold,
        far=far, tar=tar, intercept=intercept, slope=slope,
        histogram_edges=edges.tolist(),
        genuine_counts=np.histogram(genuine, bins=edges)[0].tolist(),
        impostor_counts=np.histogram(impostor, bins=edges)[0].tolist(),
        roc_thresholds=curve.thresholds[keep].tolist(), roc_far=curve.far[keep].tolist(), roc_tar=curve.tar[keep].tolist(),
    )


def calibrate(embeddings: np.ndarray, labels: Sequence[Hashable], metric: str | None = None,
              target_far: float | None = None, seed: int = 0, context: Mapping[str, Any] | None = None,
              max_impostor: int = DEFAULT_MAX_IMPOSTOR, default_metric: str = "cosine") -> Calibration:
    """Calibrate thresholds for every metric on labelled embeddings (one row per photo).

    Each metric's threshold sits at its equal-error rate, or at ``target_far`` (the largest threshold
    whose false-accept rate on the impostor pairs is at most that) when given. Verification decides on
    ``metric`` when given, else on the one these pairs separate best (:func:`choose_metric`; ties keep
    ``default_metric``, the backbone's declared one).
    """
    if metric is not None:
        check_metric(metric)
    if target_far is not None:
        _check_target_far(target_far)
    checked_context = _check_context(context or {})
    matrix = as_matrix(embeddings)
    if len(labels) != matrix.shape[0]:
        raise ValueError(f"got {matrix.shape[0]} embeddings but {len(labels)} labels")
    genuine_pairs, impostor_pairs = pairs(labels, max_impostor=max_impostor, seed=seed)
    genuine, impostor = pair_distances(matrix, genuine_pairs), pair_distances(matrix, impostor_pairs)
    per_metric = {name: _metric_calibration(genuine[name], impostor[name], target_far) for name in METRICS}
    chosen, chosen_by = (metric, "given") if metric is not None else choose_metric(per_metric, target_far, default_metric)
    return Calibration(
        context=checked_context,
        metric=chosen,
        metric_chosen_by=chosen_by,
        target_far=target_far,
        n_people=len(set(labels)),
        n_embeddings=matrix.shape[0],
        embedding_dim=matrix.shape[1],
        n_genuine=len(genuine_pairs),
        n_impostor=len(impostor_pairs),
        metrics=per_metric,
    )


# ---------------------------------------------------------------- store

def calibration_path(context: Mapping[str, Any]) -> Path:
    """Where the calibration for ``context`` lives: named by a hash of the context's canonical JSON."""
    canonical = json.dumps(_check_context(context), sort_keys=True, separators=(",", ":"))
    return calibrations_dir() / f"{hashlib.sha256(canonical.encode()).hexdigest()[:24]}.json"


def save_calibration(calibration: Calibration) -> Path:
    """Write atomically (temp file + rename), replacing any older calibration for the same context."""
    path = calibration_path(calibration.context)
    write_json_atomic(path, calibration.to_dict(), indent=1, allow_nan=False)
    return path


def _read(path: Path) -> Calibration | None:
    """The calibration in ``path``, or None when it is missing or unreadable (it is only a cache)."""
    try:
        return Calibration.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, ValueError):
        return None


def load_calibration(context: Mapping[str, Any]) -> Calibration | None:
    """The stored calibration for exactly this context, or None (missing, corrupt or for another context)."""
    calibration = _read(calibration_path(context))
    if calibration is None or calibration.context != _check_context(context):
        return None
    return calibration


def list_calibrations() -> list[Calibration]:
    """Every readable stored calibration, newest first (unreadable files are skipped).

    ``created`` counts whole seconds (it is shown to people): two made within one second are ordered by their
    files' modification times, so the one made last is still the newest.
    """
    found = []
    for path in calibrations_dir().glob("[!.]*.json"):
        calibration = _read(path)
        if calibration is None:
            continue
        try:
            written = path.stat().st_mtime_ns
        except OSError:  # removed since it was read
            continue
        found.append((calibration.created, written, calibration))
    return [calibration for *_, calibration in sorted(found, key=lambda entry: entry[:2], reverse=True)]
