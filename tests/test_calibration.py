"""Pairs, ROC/AUC/EER, threshold choice, the Calibration record and its store (core.compare.calibration)."""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import core.compare.calibration as calibration_module
import core.files as files_module
from core.compare.calibration import (
    MIN_IMPOSTOR,
    ROC_POINTS,
    TOO_FEW_MESSAGE,
    Calibration,
    auc,
    calibrate,
    calibration_path,
    eer,
    fit_logistic,
    list_calibrations,
    load_calibration,
    pairs,
    roc,
    save_calibration,
    threshold_at_far,
)
from core.compare.distances import METRICS, ZeroEmbeddingError, logistic_confidence, nearest
from core.compare.verification import verify
from core.config import cache_dir
from core.images import load_image
from tests.conftest import identity_clusters, shared_dataset

CONTEXT = {"dataset": "sha256:abc", "detector": "mtcnn", "align": True, "backbone": "vgg-face", "weights": "w1"}


def uniform_grid(low: float, high: float, count: int = 1000) -> np.ndarray:
    """Evenly spread quantiles of U(low, high): a noise-free stand-in for a uniform sample."""
    return low + (high - low) * (np.arange(count) + 0.5) / count


def clusters(people: int = 8, per_person: int = 6, dim: int = 24, noise: float = 0.6, seed: int = 0):
    return identity_clusters(people, per_person, dim, noise, seed, prefix="p")


@pytest.fixture(scope="module")
def synthetic_calibration() -> Calibration:
    embeddings, labels = clusters()
    return calibrate(embeddings, labels, metric="euclidean_l2", context=CONTEXT)


# ---------------------------------------------------------------- pairs

def test_pairs_lists_every_genuine_pair_and_only_impostors_otherwise():
    labels = ["a", "a", "b", "c", "c", "c", "a"]
    genuine, impostor = pairs(labels)
    assert {tuple(p) for p in genuine.tolist()} == {(0, 1), (0, 6), (1, 6), (3, 4), (3, 5), (4, 5)}
    total = len(labels) * (len(labels) - 1) // 2 - len(genuine)
    assert len(impostor) == total  # fewer impostor pairs exist than the sample size: all of them
    assert all(i < j and labels[i] != labels[j] for i, j in impostor.tolist())
    assert len({tuple(p) for p in impostor.tolist()}) == len(impostor)


def test_impostor_sample_is_sized_capped_and_deterministic():
    labels = np.repeat(np.arange(30), 4)  # 180 genuine pairs, 7020 impostor pairs
    genuine, impostor = pairs(labels, seed=3)
    assert len(genuine) == 180 and len(impostor) == max(MIN_IMPOSTOR, 5 * 180)
    assert np.all(labels[impostor[:, 0]] != labels[impostor[:, 1]])
    np.testing.assert_array_equal(impostor, pairs(labels, seed=3)[1])
    assert not np.array_equal(impostor, pairs(labels, seed=4)[1])
    assert len(pairs(labels, max_impostor=100)[1]) == 100


def test_impostor_sampling_without_listing_every_pair(monkeypatch):
    monkeypatch.setattr(calibration_module, "_ENUMERATE_LIMIT", 10)
    labels = np.repeat(np.arange(40), 3)
    _, impostor = pairs(labels, max_impostor=500, seed=1)
    assert len(impostor) == 500
    assert np.all(impostor[:, 0] < impostor[:, 1])
    assert np.all(labels[impostor[:, 0]] != labels[impostor[:, 1]])
    assert len(np.unique(impostor, axis=0)) == 500
    np.testing.assert_array_equal(impostor, pairs(labels, max_impostor=500, seed=1)[1])


@pytest.mark.parametrize("labels", [["a", "a", "a"], ["a", "b", "c"], ["a"], []])
def test_too_few_people_or_photos_is_a_clear_error(labels):
    with pytest.raises(ValueError, match=TOO_FEW_MESSAGE):
        pairs(labels)
    if labels:
        with pytest.raises(ValueError, match=TOO_FEW_MESSAGE):
            calibrate(np.random.default_rng(0).normal(size=(len(labels), 4)), labels)


# ---------------------------------------------------------------- ROC, AUC, EER

def test_roc_counts_accepted_pairs_at_each_threshold():
    curve = roc([0.1, 0.3], [0.2, 0.4, 0.4])
    np.testing.assert_allclose(curve.thresholds[1:], [0.1, 0.2, 0.3, 0.4])
    assert curve.thresholds[0] < 0.1
    np.testing.assert_allclose(curve.tar, [0, 0.5, 0.5, 1, 1])
    np.testing.assert_allclose(curve.far, [0, 0, 1 / 3, 1 / 3, 1])


def test_auc_of_separated_reversed_and_identical_distributions():
    assert auc([0.1, 0.2, 0.3], [0.5, 0.9]) == 1.0
    assert auc([0.5, 0.9], [0.1, 0.2, 0.3]) == 0.0
    same = np.random.default_rng(2).random(500)
    assert auc(same, same) == pytest.approx(0.5)
    assert auc(uniform_grid(0, 1), uniform_grid(0, 1, 700)) == pytest.approx(0.5, abs=1e-3)


def test_auc_counts_ties_as_half():
    # pairs (g, i): (0,1) (0,2) (1,2) correct, (1,1) tied → 3.5 of 4
    assert auc([0.0, 1.0], [1.0, 2.0]) == pytest.approx(0.875)
    assert auc([1.0], [1.0]) == pytest.approx(0.5)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 6), min_size=1, max_size=30), st.lists(st.integers(0, 6), min_size=1, max_size=30))
def test_auc_equals_trapezoid_area_under_roc(genuine, impostor):
    curve = roc(genuine, impostor)
    assert auc(genuine, impostor) == pytest.approx(np.trapezoid(curve.tar, curve.far), abs=1e-12)


def test_eer_of_overlapping_uniform_distributions_is_ten_percent():
    # genuine ~ U(0, 1), impostor ~ U(0.8, 1.8): FRR(t) = 1 − t, FAR(t) = t − 0.8 → equal at t = 0.9, rate 0.1.
    genuine, impostor = uniform_grid(0.0, 1.0), uniform_grid(0.8, 1.8)
    rate, threshold = eer(genuine, impostor)
    assert rate == pytest.approx(0.1, abs=2e-3)
    assert threshold == pytest.approx(0.9, abs=2e-3)
    # P(genuine > impostor) = ∫_0.8^1 (g − 0.8) dg = 0.02
    assert auc(genuine, impostor) == pytest.approx(0.98, abs=1e-3)
    rng = np.random.default_rng(3)
    sampled_rate, _ = eer(rng.uniform(0, 1, 20_000), rng.uniform(0.8, 1.8, 20_000))
    assert sampled_rate == pytest.approx(0.1, abs=0.01)


def test_eer_of_separated_distributions_is_zero_in_the_middle_of_the_gap():
    rate, threshold = eer([0.1, 0.2], [0.8, 0.9])
    assert rate == 0.0 and threshold == pytest.approx(0.5)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(0, 2), min_size=1, max_size=40),
    st.lists(st.floats(0, 2), min_size=1, max_size=40),
    st.floats(0, 1),
)
def test_threshold_at_far_keeps_far_under_target_with_the_most_accepts(genuine, impostor, target):
    threshold = threshold_at_far(genuine, impostor, target)
    impostor = np.array(impostor)
    assert np.mean(impostor <= threshold) <= target
    above = impostor[impostor > threshold]
    if above.size:  # accepting the next impostor distance up would break the target
        assert np.mean(impostor <= above.min()) > target


def test_threshold_at_far_on_uniform_distributions():
    genuine, impostor = uniform_grid(0.0, 1.0), uniform_grid(0.8, 1.8)
    threshold = threshold_at_far(genuine, impostor, 0.05)
    assert threshold == pytest.approx(0.85, abs=2e-3)
    strict = threshold_at_far(genuine, impostor, 0.0)
    assert genuine[genuine < impostor.min()].max() <= strict < impostor.min()  # no impostor, most genuine
    with pytest.raises(ValueError, match="between 0 and 1"):
        threshold_at_far(genuine, impostor, 1.5)


def test_roc_functions_reject_empty_or_nan_input():
    with pytest.raises(ValueError, match="no genuine"):
        roc([], [1.0])
    with pytest.raises(ValueError, match="NaN"):
        auc([0.1], [math.nan])


def test_logistic_fit_is_decreasing_and_centred_between_the_classes():
    intercept, slope = fit_logistic(uniform_grid(0.0, 1.0), uniform_grid(0.8, 1.8))
    assert slope < 0
    assert -intercept / slope == pytest.approx(0.9, abs=0.01)  # symmetric classes: P = 0.5 at the EER point
    separated = fit_logistic([0.1, 0.2, 0.25], [0.8, 0.9])
    assert all(math.isfinite(v) for v in separated)
    assert logistic_confidence(0.15, *separated) > 0.9 > 0.1 > logistic_confidence(0.85, *separated)
    assert fit_logistic([0.5, 0.5], [0.5]) == (0.0, 0.0)


# ---------------------------------------------------------------- calibrate

def test_calibrate_summarises_every_metric(synthetic_calibration):
    cal = synthetic_calibration
    assert cal.metric == "euclidean_l2" and cal.context == CONTEXT
    assert (cal.n_people, cal.n_embeddings, cal.embedding_dim) == (8, 48, 24)
    assert cal.n_genuine == 8 * 15 and cal.n_impostor == 48 * 47 // 2 - 120
    assert set(cal.metrics) == set(METRICS)
    for metric, m in cal.metrics.items():
        assert cal.auc[metric] > 0.95 and cal.eer[metric] < 0.1
        assert m.threshold == m.eer_threshold
        assert sum(m.genuine_counts) == cal.n_genuine and sum(m.impostor_counts) == cal.n_impostor
        assert len(m.histogram_edges) == len(m.genuine_counts) + 1 == len(m.impostor_counts) + 1
        assert len(m.roc_far) == len(m.roc_tar) == len(m.roc_thresholds) <= ROC_POINTS
        assert (m.roc_far[0], m.roc_tar[0], m.roc_far[-1], m.roc_tar[-1]) == (0, 0, 1, 1)
        assert m.slope < 0
    # cosine and euclidean_l2 rank pairs identically (l2 = sqrt(2·cosine))
    assert cal.thresholds["euclidean_l2"] == pytest.approx(math.sqrt(2 * cal.thresholds["cosine"]), rel=0.05)


def test_calibrate_at_a_target_false_accept_rate():
    embeddings, labels = clusters(noise=1.0)
    cal = calibrate(embeddings, labels, target_far=0.01)
    eer_cal = calibrate(embeddings, labels)
    for metric in METRICS:
        assert cal.metrics[metric].far <= 0.01
        assert cal.thresholds[metric] <= eer_cal.thresholds[metric]
    assert cal.target_far == 0.01 and eer_cal.target_far is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"metric": "angle"}, "unknown metric"), ({"target_far": -0.1}, "between 0 and 1"),
     ({"context": {"align": [1, 2]}}, "context value"), ({"labels": ["p0"] * 3}, "labels")],
)
def test_calibrate_rejects_bad_arguments(kwargs, message):
    embeddings, labels = clusters(people=2, per_person=3)
    arguments = {"labels": labels, **kwargs}
    with pytest.raises(ValueError, match=message):
        calibrate(embeddings, **arguments)


def test_calibrate_names_an_all_zero_embedding():
    embeddings, labels = clusters(people=2, per_person=3)
    embeddings[4] = 0.0
    with pytest.raises(ZeroEmbeddingError, match="row 4 is all zeros"):
        calibrate(embeddings, labels)


# ---------------------------------------------------------------- store

def test_save_and_load_round_trip(synthetic_calibration):
    path = save_calibration(synthetic_calibration)
    assert path.parent == cache_dir() / "calibrations" and path == calibration_path(CONTEXT)
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left behind
    json.loads(path.read_text())  # standard JSON (no NaN)
    loaded = load_calibration(dict(reversed(list(CONTEXT.items()))))  # key order does not matter
    assert loaded == synthetic_calibration
    assert loaded.confidence("cosine", 0.0) == synthetic_calibration.confidence("cosine", 0.0)
    assert list_calibrations() == [synthetic_calibration]


def test_of_two_made_within_one_second_the_last_is_the_newest(synthetic_calibration):
    """``created`` counts whole seconds; a recalibration a moment later (the CLI on a fast machine) must still win."""
    first = synthetic_calibration
    second = dataclasses.replace(first, context={**CONTEXT, "dataset": "sha256:def"})
    for order in ((first, second), (second, first)):
        for calibration in order:
            save_calibration(calibration)
            time.sleep(0.02)  # more than the file system's clock tick
        assert [c.created for c in order] == [first.created] * 2, "the same second"
        assert list_calibrations() == [order[1], order[0]]


def test_missing_and_mismatched_contexts_load_as_none(synthetic_calibration):
    assert load_calibration(CONTEXT) is None
    save_calibration(synthetic_calibration)
    assert load_calibration({**CONTEXT, "align": False}) is None
    assert load_calibration({**CONTEXT, "weights": "w2"}) is None
    # a file that landed under another context's name is not trusted either
    other = {**CONTEXT, "detector": "dlib-hog"}
    calibration_path(other).write_text(calibration_path(CONTEXT).read_text())
    assert load_calibration(other) is None


@pytest.mark.parametrize(
    "content",
    ["", "{not json", '{"format": 1}', "[]", '{"format": 99}', "\udcff".encode("utf-8", "surrogatepass")],
)
def test_corrupt_files_load_as_none_and_are_skipped_in_listings(synthetic_calibration, content):
    path = calibration_path(CONTEXT)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    assert load_calibration(CONTEXT) is None
    assert list_calibrations() == []


def test_non_finite_values_in_a_stored_record_are_rejected(synthetic_calibration):
    data = synthetic_calibration.to_dict()
    data["metrics"]["cosine"]["threshold"] = float("nan")
    calibration_path(CONTEXT).write_text(json.dumps(data))
    assert load_calibration(CONTEXT) is None
    with pytest.raises(ValueError, match="non-finite"):
        Calibration.from_dict(data)


def test_a_failed_save_leaves_no_file(synthetic_calibration, monkeypatch):
    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(files_module.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        save_calibration(synthetic_calibration)
    assert list((cache_dir() / "calibrations").iterdir()) == []


def test_saving_again_replaces_the_old_calibration(synthetic_calibration):
    save_calibration(synthetic_calibration)
    embeddings, labels = clusters(seed=5)
    newer = calibrate(embeddings, labels, context=CONTEXT)
    save_calibration(newer)
    assert load_calibration(CONTEXT) == newer
    assert len(list_calibrations()) == 1


# ---------------------------------------------------------------- real faces

def _pixel_embeddings(folder: Path) -> tuple[np.ndarray, list[str]]:
    """Crude embeddings: each ORL photo averaged down 4× to 28×23 grey pixels."""
    vectors, labels = [], []
    for path in sorted(folder.glob("*/*.pgm")):
        grey = load_image(path).mean(axis=2)
        h, w = grey.shape[0] // 4 * 4, grey.shape[1] // 4 * 4
        vectors.append(grey[:h, :w].reshape(h // 4, 4, w // 4, 4).mean(axis=(1, 3)).ravel())
        labels.append(path.parent.name)
    return np.array(vectors), labels


def test_calibration_and_identification_on_real_faces():
    """Even raw pixels separate ORL's 40 people; calibration must find that and verify must use it."""
    root = shared_dataset("orl_att_faces")
    train, train_labels = _pixel_embeddings(root / "train")
    test, test_labels = _pixel_embeddings(root / "test")
    mean = train.mean(axis=0)
    cal = calibrate(train - mean, train_labels, context={"dataset": "orl"})
    assert cal.n_people == 40 and cal.n_genuine == 40 * 15
    assert cal.auc["cosine"] > 0.9 and cal.eer["cosine"] < 0.2
    hits = [nearest(q - mean, train - mean, train_labels, k=1)[0][0] == label for q, label in zip(test, test_labels)]
    assert np.mean(hits) > 0.85
    same = [verify(test[i] - mean, test[i + 1] - mean, cal).verified for i in range(0, len(test), 2)]
    different = [verify(test[i] - mean, test[i + 2] - mean, cal).verified for i in range(0, len(test) - 2, 2)]
    assert np.mean(same) > 0.7 and np.mean(different) < 0.3
