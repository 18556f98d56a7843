"""Distances, verdicts, nearest-person search and 2-D maps (core.compare: distances, verification, projection)."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

import core.compare.distances as distances_module
from core.compare.calibration import calibrate
from core.compare.distances import (
    METRICS,
    ZeroEmbeddingError,
    cosine_distance,
    distances,
    euclidean_distance,
    euclidean_l2_distance,
    nearest,
    pair_distances,
    paired_distances,
    pairwise_distances,
)
from core.compare.projection import project_2d
from core.compare.verification import verify
from core.pipeline.backbones.dlib_resnet import DLIB_EUCLIDEAN_THRESHOLD
from tests.conftest import ROOT, identity_clusters

SCALAR = {"cosine": cosine_distance, "euclidean": euclidean_distance, "euclidean_l2": euclidean_l2_distance}


def clusters(people: int = 6, per_person: int = 8, dim: int = 32, noise: float = 0.4, seed: int = 0):
    """Embeddings of ``people`` well-separated identities, with their labels."""
    return identity_clusters(people, per_person, dim, noise, seed)


@pytest.fixture(scope="module")
def calibrated():
    embeddings, labels = clusters()
    return calibrate(embeddings, labels, metric="cosine", context={"dataset": "synthetic"}), embeddings


# ---------------------------------------------------------------- distances

@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ((1, 0), (0, 1), {"cosine": 1.0, "euclidean": math.sqrt(2), "euclidean_l2": math.sqrt(2)}),
        ((3, 4), (6, 8), {"cosine": 0.0, "euclidean": 5.0, "euclidean_l2": 0.0}),
        ((1, 0), (-2, 0), {"cosine": 2.0, "euclidean": 3.0, "euclidean_l2": 2.0}),
        ((1, 1), (1, 0), {"cosine": 1 - 1 / math.sqrt(2), "euclidean": 1.0, "euclidean_l2": math.sqrt(2 - math.sqrt(2))}),
    ],
)
def test_distances_match_hand_computed_values(a, b, expected):
    for metric, value in expected.items():
        assert SCALAR[metric](a, b) == pytest.approx(value, abs=1e-12)
    assert distances(a, b) == pytest.approx(expected, abs=1e-12)


def test_distances_are_symmetric_and_zero_for_identical_vectors():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(2, 128))
    for metric, function in SCALAR.items():
        assert function(a, b) == pytest.approx(function(b, a))
        assert function(a, a) == pytest.approx(0.0, abs=1e-12), metric


def test_pairwise_and_paired_match_the_scalar_functions():
    rng = np.random.default_rng(2)
    left, right = rng.normal(size=(5, 64)), rng.normal(size=(7, 64)) * 3
    right[0] = left[0]  # an identical pair exercises the round-off clipping
    for metric, function in SCALAR.items():
        matrix = pairwise_distances(left, right, metric)
        assert matrix.shape == (5, 7)
        expected = np.array([[function(x, y) for y in right] for x in left])
        np.testing.assert_allclose(matrix, expected, atol=1e-7)
        np.testing.assert_allclose(paired_distances(left, right[:5], metric), np.diag(expected[:, :5]), atol=1e-12)


def test_pair_distances_give_every_metric_for_index_pairs_in_chunks(monkeypatch):
    monkeypatch.setattr(distances_module, "PAIR_CHUNK", 3)
    embeddings = np.random.default_rng(7).normal(size=(6, 5))
    index_pairs = np.array([[0, 1], [2, 5], [3, 4], [1, 5], [0, 5], [2, 3], [1, 4], [2, 2]])
    result = pair_distances(embeddings, index_pairs)
    assert set(result) == set(METRICS)
    for metric, function in SCALAR.items():
        expected = [function(embeddings[i], embeddings[j]) for i, j in index_pairs]
        np.testing.assert_allclose(result[metric], expected, atol=1e-7)
    assert list(pair_distances(embeddings, index_pairs, ["euclidean"])) == ["euclidean"]


def test_zero_vectors_raise_a_clear_error_where_a_direction_is_needed():
    zero, other = np.zeros(4), np.array([1.0, 2.0, 3.0, 4.0])
    for function in (cosine_distance, euclidean_l2_distance):
        with pytest.raises(ZeroEmbeddingError, match="all zeros"):
            function(zero, other)
    assert euclidean_distance(zero, other) == pytest.approx(math.sqrt(30))
    with pytest.raises(ZeroEmbeddingError, match="row 2"):
        pairwise_distances(np.ones((2, 4)), np.stack([other, other, zero]), "cosine")
    with pytest.raises(ZeroEmbeddingError, match="row 1"):
        pair_distances(np.stack([other, zero]), [[0, 1]])
    assert pairwise_distances(np.stack([other, zero]), np.stack([zero]), "euclidean")[0, 0] == pytest.approx(math.sqrt(30))
    assert pair_distances(np.stack([other, zero]), [[0, 1]], ["euclidean"])["euclidean"][0] == pytest.approx(math.sqrt(30))
    assert issubclass(ZeroEmbeddingError, ValueError)


@pytest.mark.parametrize(
    ("a", "b", "message"),
    [
        ([1.0, np.nan], [1.0, 0.0], "NaN"),
        ([1.0, 2.0], [1.0, 2.0, 3.0], "different lengths"),
        ([], [], "non-empty"),
        (np.ones((2, 2)), [1.0, 2.0], "1-D"),
    ],
)
def test_bad_embeddings_are_rejected_with_a_message(a, b, message):
    with pytest.raises(ValueError, match=message):
        verify(a, b)


def test_unknown_metric_is_rejected():
    with pytest.raises(ValueError, match="unknown metric"):
        pairwise_distances(np.ones((1, 2)), np.ones((1, 2)), "manhattan")


# ---------------------------------------------------------------- verify

def test_identical_vectors_are_verified_with_high_confidence_by_default():
    vector = np.random.default_rng(3).normal(size=2622)
    verdict = verify(vector, vector)
    assert verdict.verified and verdict.confidence > 0.99
    assert verdict.threshold_source == "default"
    assert verdict.metric == "cosine" and verdict.distance == pytest.approx(0.0, abs=1e-12)
    assert set(verdict.distances) == set(verdict.thresholds) == set(METRICS)


def test_orthogonal_vectors_are_not_verified():
    verdict = verify([1.0, 0.0, 0.0], [0.0, 1.0, 0.0])
    assert not verdict.verified and verdict.confidence < 0.01
    assert verdict.distance == pytest.approx(1.0)


def test_caller_defaults_are_used_and_reported_as_defaults():
    base = np.zeros(128)
    base[0] = 1.0
    near, far = base.copy(), base.copy()
    near[1], far[1] = 0.5, 0.7
    for other, expected in ((near, True), (far, False)):
        verdict = verify(base, other, defaults={"euclidean": DLIB_EUCLIDEAN_THRESHOLD}, metric="euclidean")
        assert verdict.verified is expected
        assert verdict.threshold == verdict.thresholds["euclidean"] == 0.6
        assert verdict.threshold_source == "default"
    assert verify(base, near).thresholds["cosine"] == 0.5  # untouched metrics keep neutral defaults


def test_neutral_defaults_agree_across_metrics_for_equal_length_vectors():
    rng = np.random.default_rng(4)
    for _ in range(50):
        a, b = rng.normal(size=(2, 16))
        b *= np.linalg.norm(a) / np.linalg.norm(b)
        verdicts = {metric: verify(a, b, metric=metric).verified for metric in METRICS}
        assert len(set(verdicts.values())) == 1, verdicts


def test_bad_default_thresholds_are_rejected():
    with pytest.raises(ValueError, match="positive"):
        verify([1.0, 0.0], [0.0, 1.0], defaults={"cosine": -0.1})
    with pytest.raises(ValueError, match="unknown metric"):
        verify([1.0, 0.0], [0.0, 1.0], defaults={"angle": 0.1})


def test_calibrated_verdict_uses_the_calibration(calibrated):
    calibration, embeddings = calibrated
    same, other = verify(embeddings[0], embeddings[1], calibration), verify(embeddings[0], embeddings[8], calibration)
    assert same.threshold_source == other.threshold_source == "calibrated"
    assert same.thresholds == calibration.thresholds and same.metric == calibration.metric
    assert same.verified and same.confidence > 0.9
    assert not other.verified and other.confidence < 0.1
    assert verify(embeddings[0], embeddings[1], calibration, metric="euclidean").threshold == calibration.thresholds["euclidean"]
    json.dumps(same.to_dict())


def test_calibrated_confidence_falls_as_distance_grows(calibrated):
    calibration, embeddings = calibrated
    anchor = embeddings[0] / np.linalg.norm(embeddings[0])
    orthogonal = np.random.default_rng(5).normal(size=anchor.size)
    orthogonal -= orthogonal @ anchor * anchor
    orthogonal /= np.linalg.norm(orthogonal)
    verdicts = [verify(anchor, math.cos(angle) * anchor + math.sin(angle) * orthogonal, calibration)
                for angle in np.linspace(0, math.pi, 25)]
    distance = [v.distance for v in verdicts]
    confidence = [v.confidence for v in verdicts]
    assert np.all(np.diff(distance) > 0)
    assert np.all(np.diff(confidence) <= 0)
    assert confidence[0] > 0.95 and confidence[-1] < 0.05


def test_calibration_for_other_embedding_length_is_refused(calibrated):
    calibration, _ = calibrated
    with pytest.raises(ValueError, match="32-long"):
        verify(np.ones(10), np.ones(10), calibration)


# ---------------------------------------------------------------- nearest

def test_nearest_lists_each_person_once_at_their_best_photo():
    gallery = np.array([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1], [-1.0, 0.0], [0.6, 0.4]])
    labels = ["ann", "bob", "ann", "cy", "bob"]
    result = nearest([1.0, 0.05], gallery, labels, metric="cosine", k=5)
    assert [label for label, _, _ in result] == ["ann", "bob", "cy"]
    assert result[0][2] == 0 and result[1][2] == 4 and result[2][2] == 3
    assert result[0][1] == pytest.approx(cosine_distance([1.0, 0.05], gallery[0]))
    assert [r[1] for r in result] == sorted(r[1] for r in result)
    assert len(nearest([1.0, 0.05], gallery, labels, k=2)) == 2


def test_nearest_rejects_bad_input():
    with pytest.raises(ValueError, match="labels"):
        nearest([1.0, 0.0], np.eye(2), ["a"])
    with pytest.raises(ValueError, match="k must"):
        nearest([1.0, 0.0], np.eye(2), ["a", "b"], k=0)


# ---------------------------------------------------------------- 2-D maps

@pytest.mark.parametrize(("count", "dim"), [(40, 20), (10, 50)])  # more points than dimensions, and fewer
def test_pca_preserves_distances_of_planar_data_and_is_deterministic(count, dim):
    rng = np.random.default_rng(6)
    plane = rng.normal(size=(count, 2)) * [5.0, 1.0]
    basis = np.linalg.qr(rng.normal(size=(dim, 2)))[0].T  # two orthonormal directions
    embeddings = plane @ basis + 3.0
    projected = project_2d(embeddings)
    assert projected.shape == (count, 2)
    np.testing.assert_allclose(pairwise_distances(projected, projected, "euclidean"),
                               pairwise_distances(embeddings, embeddings, "euclidean"), atol=1e-6)
    assert projected[:, 0].var() > projected[:, 1].var()  # first axis carries the largest spread
    np.testing.assert_array_equal(projected, project_2d(embeddings))


@pytest.mark.parametrize(("count", "dim"), [(30, 8), (8, 30)])
def test_pca_matches_the_svd_up_to_sign(count, dim):
    embeddings = np.random.default_rng(8).normal(size=(count, dim))
    centred = embeddings - embeddings.mean(axis=0)
    u, singular, _ = np.linalg.svd(centred, full_matrices=False)
    np.testing.assert_allclose(np.abs(project_2d(embeddings)), np.abs(u[:, :2] * singular[:2]), atol=1e-8)


def test_pca_handles_degenerate_shapes():
    assert project_2d(np.ones((1, 5))).tolist() == [[0.0, 0.0]]
    line = project_2d(np.arange(4.0)[:, None])
    assert line.shape == (4, 2) and np.all(line[:, 1] == 0)


def test_tsne_is_deterministic_and_keeps_identities_together():
    embeddings, labels = clusters(people=4, per_person=10, noise=0.3)
    first = project_2d(embeddings, "tsne", perplexity=8, seed=1)
    assert first.shape == (40, 2) and np.isfinite(first).all()
    np.testing.assert_array_equal(first, project_2d(embeddings, "tsne", perplexity=8, seed=1))
    assert not np.allclose(first, project_2d(embeddings, "tsne", perplexity=8, seed=2))
    gaps = pairwise_distances(first, first, "euclidean")
    labels = np.array(labels)
    same = labels[:, None] == labels[None, :]
    assert gaps[same].mean() < 0.5 * gaps[~same].mean()
    np.fill_diagonal(gaps, np.inf)
    assert np.mean(labels[gaps.argmin(axis=1)] == labels) >= 0.95  # t-SNE may strand the odd point


def test_tsne_separates_many_identities_at_a_size_the_exact_version_took_14_seconds_for():
    """1,600 points (80 people × 20): openTSNE's approximate neighbours and gradients still keep people together."""
    embeddings, labels = clusters(people=80, per_person=20, noise=0.3)
    points = project_2d(embeddings, "tsne", seed=0)
    assert points.shape == (1600, 2) and np.isfinite(points).all()
    labels = np.array(labels)
    nearest_point = np.array([np.argsort(row)[1] for row in pairwise_distances(points, points, "euclidean")])
    assert np.mean(labels[nearest_point] == labels) >= 0.95


def test_tsne_library_is_imported_only_when_a_map_is_drawn():
    code = ("import sys, numpy as np; from core.compare.projection import project_2d; project_2d(np.eye(6)); "
            "print('openTSNE' in sys.modules, 'sklearn' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "False"]


def test_projection_rejects_bad_requests():
    with pytest.raises(ValueError, match="use PCA"):
        project_2d(np.ones((3, 4)), "tsne")
    with pytest.raises(ValueError, match="between 5 and 60,000 embeddings, got 60,001; use PCA"):
        project_2d(np.zeros((60_001, 2)), "tsne")
    with pytest.raises(ValueError, match="unknown projection"):
        project_2d(np.ones((3, 4)), "umap")
