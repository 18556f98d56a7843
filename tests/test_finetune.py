"""VGGFace16 fine-tuning mode, on a reduced-size VGG16 so it runs in seconds on a CPU."""

from __future__ import annotations

import numpy as np
import pytest

from core.training.config import TrainConfig

keras = pytest.importorskip("keras")

from core.pipeline.backbones.vggface16 import build_vggface16
from core.training.finetune import build_finetune_model, set_phase, train_finetune, trainable_layer_names
from core.training.heads import load_head
from core.training.heads.finetuned import FinetunedHead

SIZE = 32


@pytest.fixture(scope="module")
def pretrained() -> keras.Model:
    keras.utils.set_random_seed(1)
    return build_vggface16(include_top=True, input_size=SIZE, classes=7, fc_units=32)


def colour_crops(n: int, seed: int) -> tuple[np.ndarray, list[str]]:
    """Two 'people': reddish and bluish crops, with noise."""
    rng = np.random.default_rng(seed)
    crops, labels = [], []
    for i in range(n):
        base = np.array([200, 40, 40] if i % 2 else [40, 40, 200], np.float32)
        crops.append(np.clip(base + rng.normal(0, 20, (SIZE, SIZE, 3)), 0, 255).astype(np.uint8))
        labels.append("red" if i % 2 else "blue")
    return np.stack(crops), labels


def test_trainable_layers_count_blocks_from_the_top() -> None:
    assert trainable_layer_names(0) == {"fc6", "fc7"}
    assert trainable_layer_names(1) == {"conv5_1", "conv5_2", "conv5_3", "fc6", "fc7"}
    assert "conv1_1" in trainable_layer_names(5)
    with pytest.raises(ValueError, match="between 0 and 5"):
        trainable_layer_names(6)


def test_phases_freeze_and_unfreeze(pretrained: keras.Model) -> None:
    model = build_finetune_model(pretrained, 3, augment=False)
    backbone = model.get_layer("vggface16")
    set_phase(model, None)
    assert not any(layer.trainable for layer in backbone.layers if layer.weights)
    assert model.get_layer("identity").trainable
    set_phase(model, 2)
    trainable = {layer.name for layer in backbone.layers if layer.trainable and layer.weights}
    assert trainable == {"conv4_1", "conv4_2", "conv4_3", "conv5_1", "conv5_2", "conv5_3", "fc6", "fc7"}


def test_finetune_learns_and_leaves_the_shared_backbone_untouched(pretrained: keras.Model) -> None:
    before = [w.copy() for w in pretrained.get_weights()]
    crops, labels = colour_crops(24, seed=0)
    val_crops, val_labels = colour_crops(8, seed=1)
    seen: list[int] = []
    config = TrainConfig(mode="finetune", epochs=4, warmup_epochs=2, batch_size=8, learning_rate=1e-2, seed=0,
                         augment=True, early_stopping_patience=0)
    result = train_finetune(config, crops, labels, val_crops, val_labels, pretrained,
                            on_epoch=lambda epoch, logs: seen.append(epoch))
    assert seen == [0, 1, 2, 3]
    assert result.labels == ["blue", "red"] and result.epochs_run == 4
    assert set(result.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert result.metrics["accuracy"] >= 0.75
    for a, b in zip(before, pretrained.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_stop_request_ends_after_warmup(pretrained: keras.Model) -> None:
    crops, labels = colour_crops(16, seed=2)
    config = TrainConfig(mode="finetune", epochs=20, warmup_epochs=1, batch_size=8, seed=0, augment=False)
    result = train_finetune(config, crops, labels, crops[:4], labels[:4], pretrained, should_stop=lambda: True)
    assert result.stopped and result.epochs_run == 1


def test_one_person_is_refused(pretrained: keras.Model) -> None:
    crops, _ = colour_crops(4, seed=3)
    with pytest.raises(ValueError, match="at least two people"):
        train_finetune(TrainConfig(mode="finetune"), crops, ["solo"] * 4, crops[:0], [], pretrained)


def test_saved_finetuned_model_predicts_the_same(pretrained: keras.Model, tmp_path) -> None:
    crops, labels = colour_crops(8, seed=4)
    config = TrainConfig(mode="finetune", epochs=1, warmup_epochs=1, batch_size=8, augment=True)
    head = train_finetune(config, crops, labels, crops[:0], [], pretrained).head
    head.save(tmp_path / "run")
    loaded = load_head(tmp_path / "run")
    assert isinstance(loaded, FinetunedHead)
    np.testing.assert_allclose(loaded.predict_proba(crops), head.predict_proba(crops), atol=1e-5)
    with pytest.raises(ValueError, match="face crops of shape"):
        loaded.predict_proba(np.zeros((2, 128), np.float32))
