"""Heads and the training loop, on synthetic embeddings (Gaussian clusters, one per person)."""

from __future__ import annotations

import numpy as np
import pytest

from core.training import heads as heads_module
from core.training.config import HISTORY_KEYS, TrainConfig
from core.training.fit import train_head
from core.training.heads import head_kinds, make_head
from core.training.heads._keras import KerasHead
from core.training.heads.centroid import CentroidHead
from core.training.metrics import class_weights, classification_metrics, evaluate

DIM = 128
PEOPLE = ["ada", "bob", "cyd", "dee", "eve"]


def clusters(per_person: int, seed: int, people: list[str] = PEOPLE, spread: float = 1.0) -> tuple[np.ndarray, list[str]]:
    """Separable embeddings: person i is centred on a fixed random direction (same for every seed)."""
    centres = np.random.default_rng(1234).normal(size=(len(PEOPLE), DIM)) * 1.5
    rng = np.random.default_rng(seed)
    X, y = [], []
    for name in people:
        centre = centres[PEOPLE.index(name)]
        X.append(centre + rng.normal(scale=spread, size=(per_person, DIM)))
        y += [name] * per_person
    return np.concatenate(X).astype(np.float32) * 7.0, y  # scaled: heads must not care about length


@pytest.fixture(scope="module")
def data() -> dict[str, tuple[np.ndarray, list[str]]]:
    return {"train": clusters(16, seed=1), "val": clusters(4, seed=2), "test": clusters(4, seed=3)}


@pytest.fixture(scope="module")
def trained(data: dict) -> dict:
    """Each head trained once for the module; the softmax run also records its live callbacks."""
    results, calls = {}, []
    for kind in head_kinds():
        on_epoch = (lambda epoch, logs: calls.append((epoch, logs))) if kind == "softmax" else None
        config = TrainConfig(head=kind, epochs=40, learning_rate=1e-2)
        results[kind] = train_head(config, *data["train"], *data["val"], on_epoch=on_epoch)
    return {"results": results, "calls": calls}


@pytest.mark.parametrize("kind", list(head_kinds()))
def test_each_head_learns_separable_people(trained: dict, data: dict, kind: str) -> None:
    result = trained["results"][kind]
    assert result.labels == sorted(PEOPLE)
    assert result.metrics["accuracy"] >= 0.95
    assert evaluate(result.head, result.labels, *data["test"])["accuracy"] >= 0.95
    proba = result.head.predict_proba(data["test"][0])
    assert proba.shape == (20, 5)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    assert not result.stopped
    assert result.epochs_run == len(result.history["loss"])
    assert set(result.history) == set(HISTORY_KEYS)


def test_on_epoch_reports_every_epoch_with_all_keys(trained: dict) -> None:
    calls, result = trained["calls"], trained["results"]["softmax"]
    assert [epoch for epoch, _ in calls] == list(range(result.epochs_run))
    for epoch, logs in calls:
        assert set(logs) == set(HISTORY_KEYS)
        assert logs["val_loss"] == result.history["val_loss"][epoch]
    assert all(isinstance(value, float) for _, logs in calls for value in logs.values())


def test_centroid_head_is_one_pass(trained: dict, data: dict) -> None:
    result = trained["results"]["centroid"]
    assert result.epochs_run == 1 and result.best_epoch == 0
    assert result.history["val_accuracy"] == [result.metrics["accuracy"]]
    # Nothing to interrupt in a one-pass fit: a stop request must not mark a complete head as stopped.
    assert not train_head(TrainConfig(head="centroid"), *data["train"], should_stop=lambda: True).stopped


def _val_loss(head, X: np.ndarray, y: list[str], labels: list[str]) -> float:
    codes = np.array([labels.index(name) for name in y])
    return float(-np.log(np.clip(head.predict_proba(X)[np.arange(len(codes)), codes], 1e-7, 1)).mean())


def test_should_stop_ends_early_and_keeps_best_weights(data: dict) -> None:
    epochs_seen: list[int] = []
    result = train_head(TrainConfig(head="notebook", epochs=50, early_stopping_patience=0), *data["train"], *data["val"],
                        on_epoch=lambda epoch, logs: epochs_seen.append(epoch), should_stop=lambda: len(epochs_seen) >= 3)
    assert result.stopped
    assert 3 <= result.epochs_run <= 4  # the epoch interrupted mid-way is still reported
    best = result.best_epoch
    assert best == int(np.argmin(result.history["val_loss"]))
    assert result.metrics["accuracy"] == pytest.approx(result.history["val_accuracy"][best])
    assert _val_loss(result.head, *data["val"], result.labels) == pytest.approx(result.history["val_loss"][best], rel=1e-4)


def test_early_stopping_restores_best_not_last_weights(data: dict) -> None:
    # Validation labels rotated by one person: the better the head fits train, the worse val loss gets.
    X_val, y_val = data["val"]
    rotated = [PEOPLE[(PEOPLE.index(name) + 1) % len(PEOPLE)] for name in y_val]
    result = train_head(TrainConfig(head="softmax", epochs=60, early_stopping_patience=3, learning_rate=1e-2),
                        *data["train"], X_val, rotated)
    assert not result.stopped
    assert result.epochs_run < 60
    assert result.best_epoch < result.epochs_run - 1
    restored = _val_loss(result.head, X_val, rotated, result.labels)
    assert restored == pytest.approx(result.history["val_loss"][result.best_epoch], rel=1e-4)
    assert restored < result.history["val_loss"][-1]


def test_same_seed_same_predictions(data: dict) -> None:
    def proba(seed: int) -> np.ndarray:
        config = TrainConfig(head="softmax", epochs=3, seed=seed)
        return train_head(config, *data["train"], *data["val"]).head.predict_proba(data["test"][0])

    np.testing.assert_allclose(proba(7), proba(7), atol=1e-6)


def test_without_validation_tracks_train_loss(data: dict) -> None:
    X_empty = np.zeros((0, DIM), np.float32)
    result = train_head(TrainConfig(head="softmax", epochs=4), *data["train"], X_empty, [])
    assert result.metrics is None
    assert set(result.history) == {"loss", "accuracy"} and result.epochs_run == 4
    assert result.best_epoch == int(np.argmin(result.history["loss"]))


def test_validation_people_missing_from_train_are_reported(data: dict) -> None:
    X_train, y_train = clusters(8, seed=4, people=PEOPLE[:4])
    result = train_head(TrainConfig(head="centroid"), X_train, y_train, *data["val"])
    assert result.labels == PEOPLE[:4]
    assert result.metrics["unknown"] == {"eve": 4}
    assert result.metrics["n"] == 16
    assert any("eve (4)" in note for note in result.warnings)


def test_bad_inputs_get_clear_errors(data: dict) -> None:
    X, y = data["train"]
    with pytest.raises(ValueError, match="at least two people"):
        train_head(TrainConfig(), X[:16], y[:16])
    with pytest.raises(ValueError, match="train split is empty"):
        train_head(TrainConfig(), np.zeros((0, DIM), np.float32), [])
    with pytest.raises(ValueError, match="labels"):
        train_head(TrainConfig(), X, y[:-1])
    broken = X.copy()
    broken[3, 5] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        train_head(TrainConfig(), broken, y)
    with pytest.raises(ValueError, match="features"):
        train_head(TrainConfig(), X, y, data["val"][0][:, :64], data["val"][1])
    with pytest.raises(ValueError, match="2-D"):
        train_head(TrainConfig(), X[0], y[:1])


@pytest.mark.parametrize("field, value, message", [
    ("head", "forest", "unknown head"), ("mode", "magic", "unknown mode"), ("epochs", 0, "epochs and batch_size"),
    ("batch_size", 0, "epochs and batch_size"), ("learning_rate", 0.0, "learning_rate"),
    ("class_weighting", "maybe", "class_weighting"), ("early_stopping_patience", -1, "early_stopping_patience"),
])
def test_bad_config_is_refused(data: dict, field: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        train_head(TrainConfig(**{field: value}), *data["train"])


def test_finetune_mode_is_not_a_head(data: dict) -> None:
    with pytest.raises(ValueError, match="goes through train_on_dataset"):
        train_head(TrainConfig(mode="finetune"), *data["train"])


def test_config_round_trip_keeps_unknown_keys() -> None:
    config = TrainConfig(head="notebook", backbone="dlib", dataset_fingerprint="abc", extra={"note": 1})
    saved = config.to_dict() | {"from_a_newer_version": True}
    restored = TrainConfig.from_dict(saved)
    assert restored.head == "notebook" and restored.backbone == "dlib" and restored.dataset_fingerprint == "abc"
    assert restored.extra == {"note": 1, "from_a_newer_version": True}


def test_balanced_class_weights_by_hand() -> None:
    weights = class_weights(np.array([0, 0, 0, 0, 0, 0, 1, 1]), 2)
    assert weights == pytest.approx({0: 8 / 12, 1: 8 / 4})
    # Each class then contributes the same total weight.
    assert 6 * weights[0] == pytest.approx(2 * weights[1])


@pytest.mark.parametrize("weighting, expected", [("balanced", {0: 8 / 12, 1: 8 / 4}), ("none", None)])
def test_class_weighting_reaches_the_head(monkeypatch: pytest.MonkeyPatch, weighting: str, expected: dict | None) -> None:
    seen = {}

    def fake_fit(self, X, y, **settings) -> None:
        seen.update(settings)

    monkeypatch.setattr(KerasHead, "fit", fake_fit)
    X, y = np.random.default_rng(5).normal(size=(8, DIM)), ["ada"] * 6 + ["bob"] * 2
    train_head(TrainConfig(class_weighting=weighting, epochs=1), X, y)
    assert seen["class_weight"] == (pytest.approx(expected) if expected else None)


def test_metrics_against_hand_computed_example() -> None:
    metrics = classification_metrics(np.array([0, 0, 1, 1, 2]), np.array([0, 1, 1, 1, 0]), ["a", "b", "c"])
    assert metrics["accuracy"] == pytest.approx(3 / 5)
    assert metrics["confusion"] == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    per_class = metrics["per_class"]
    assert per_class["a"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    assert per_class["b"] == pytest.approx({"precision": 2 / 3, "recall": 1.0, "f1": 0.8, "support": 2})
    assert per_class["c"] == pytest.approx({"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1})
    assert metrics["macro_f1"] == pytest.approx((0.5 + 0.8 + 0.0) / 3)
    assert metrics["labels"] == ["a", "b", "c"]


def test_evaluate_counts_unknown_people(trained: dict, data: dict) -> None:
    result = trained["results"]["centroid"]
    X, y = data["test"]
    metrics = evaluate(result.head, result.labels, X, y[:-2] + ["zed", "zed"])
    assert metrics["unknown"] == {"zed": 2} and metrics["n"] == 18
    with pytest.raises(ValueError, match="nothing to evaluate"):
        evaluate(result.head, result.labels, X[:2], ["zed", "yan"])


def test_centroid_probabilities_follow_cosine_similarity() -> None:
    head = CentroidHead(input_dim=2, n_classes=2, temperature=0.1)
    head.fit(np.array([[10.0, 0.0], [0.0, 3.0]], np.float32), np.array([0, 1]))
    proba = head.predict_proba(np.array([[1.0, 0.0], [1.0, 1.0]], np.float32))
    # Unit centroids (1, 0) and (0, 1): similarities 1 and 0, divided by the temperature 0.1.
    assert proba[0] == pytest.approx([1 / (1 + np.exp(-10)), 1 / (1 + np.exp(10))], rel=1e-4)
    assert proba[1] == pytest.approx([0.5, 0.5])


def test_notebook_widths_follow_the_number_of_people() -> None:
    small = make_head("notebook", 16, 5).model
    large = make_head("notebook", 16, 40).model
    assert (small.get_layer("dense1").units, small.get_layer("dense2").units) == (100, 10)
    assert (large.get_layer("dense1").units, large.get_layer("dense2").units) == (160, 80)


def test_heads_reject_wrong_embedding_width() -> None:
    head = make_head("centroid", 8, 2)
    head.fit(np.eye(8, dtype=np.float32)[:2], np.array([0, 1]))
    with pytest.raises(ValueError, match="expects 8"):
        head.predict_proba(np.zeros((1, 4), np.float32))
    with pytest.raises(ValueError, match="unknown head"):
        heads_module.make_head("forest", 8, 2)
