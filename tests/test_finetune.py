"""Fine-tuning mode for any fine-tunable backbone: on a reduced-size VGG16 and on a tiny network that follows the same
contract as dlib's (crops 0–255 in, preprocessing inside, a "descriptor" out), so it runs in seconds on a CPU; then on
dlib's real ResNet when its Keras model and weights are here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from core.training.config import TrainConfig

keras = pytest.importorskip("keras")

from core import runs
from core.pipeline.backbones import BACKBONES
from core.pipeline.backbones._vggface_layers import VGGFacePreprocess
from core.pipeline.backbones.base import Backbone
from core.pipeline.backbones.vggface16 import VGGFace16, build_vggface16
from core.registry import Entry
from core.training.finetune import augmentation, new_head, train_finetune
from core.training.heads import HEAD_FILE, load_head
from core.training.heads.finetuned import LAYERS_FILE, ORIGIN_FILE, FinetunedHead, unfrozen_groups
from tests.conftest import FinetunedRun

SIZE = 32


class TinyVGG(VGGFace16):
    """VGGFace16 itself, on a reduced random VGG16 (32-pixel crops, 32-unit fc6/fc7)."""

    name = "tiny-vgg"
    input_size = SIZE

    def __init__(self) -> None:
        keras.utils.set_random_seed(1)
        self.model = build_vggface16(include_top=True, input_size=SIZE, classes=7, fc_units=32)
        self._weights_id = "tiny-vgg-1"


class TinyNet(Backbone):
    """A small network following the fine-tuning contract like dlib's: two stages (one with batch normalisation,
    whose moving statistics are weights that are not trained) and a 16-d "descriptor" on top."""

    name = "tiny-net"
    input_size = SIZE
    embedding_dim = 16
    fine_tunable = True
    finetune_blocks = (("conv_a",), ("conv_b", "norm_b"), ("descriptor",))

    def __init__(self) -> None:
        keras.utils.set_random_seed(2)
        self.model = self._build()
        self._weights_id = "tiny-net-1"

    def _build(self) -> keras.Model:
        inputs = keras.Input((SIZE, SIZE, 3), name="chip")
        x = keras.layers.Rescaling(1 / 127.5, -1.0, name="scale")(inputs)
        x = keras.layers.Conv2D(8, 3, strides=2, activation="relu", name="conv_a")(x)
        x = keras.layers.Conv2D(16, 3, strides=2, name="conv_b")(x)
        x = keras.layers.BatchNormalization(name="norm_b")(x)
        x = keras.layers.GlobalAveragePooling2D(name="pool")(keras.layers.ReLU(name="relu_b")(x))
        return keras.Model(inputs, keras.layers.Dense(16, name="descriptor")(x), name="tiny_net")

    def finetune_network(self) -> keras.Model:
        network = self._build()
        network.set_weights(self.model.get_weights())
        return network

    def embed(self, crops: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.predict_on_batch(crops.astype(np.float32)))


@pytest.fixture(scope="module")
def tiny_vgg() -> TinyVGG:
    return TinyVGG()


@pytest.fixture(scope="module")
def tiny_net() -> TinyNet:
    return TinyNet()


@pytest.fixture
def registered(tiny_vgg: TinyVGG, tiny_net: TinyNet, monkeypatch: pytest.MonkeyPatch) -> dict[str, Backbone]:
    """Both test backbones registered under their names with their shared instances, as loading a run finds them."""
    BACKBONES.entries()  # discover the real plug-ins first, so the fakes are removed after the test
    instances = {}
    for backbone in (tiny_vgg, tiny_net):
        monkeypatch.setitem(BACKBONES._entries, backbone.name, Entry(backbone.name, backbone.name, type(backbone)))
        monkeypatch.setitem(BACKBONES._instances, (backbone.name, ()), backbone)
        instances[backbone.name] = backbone
    return instances


def colour_crops(n: int, seed: int) -> tuple[np.ndarray, list[str]]:
    """Two 'people': reddish and bluish crops, with noise."""
    rng = np.random.default_rng(seed)
    crops, labels = [], []
    for i in range(n):
        base = np.array([200, 40, 40] if i % 2 else [40, 40, 200], np.float32)
        crops.append(np.clip(base + rng.normal(0, 20, (SIZE, SIZE, 3)), 0, 255).astype(np.uint8))
        labels.append("red" if i % 2 else "blue")
    return np.stack(crops), labels


def test_vggface_declares_its_blocks_with_todays_meaning() -> None:
    blocks = VGGFace16.finetune_blocks
    assert len(blocks) == 6 and blocks[-1] == ("fc6", "fc7") and blocks[0] == ("conv1_1", "conv1_2")
    assert blocks[4] == ("conv5_1", "conv5_2", "conv5_3") and VGGFace16.finetune_dropout == 0.5
    assert unfrozen_groups(6, 0) == (5,) and unfrozen_groups(6, 1) == (4, 5) and unfrozen_groups(6, 5) == tuple(range(6))
    with pytest.raises(ValueError, match="between 0 and 5"):
        unfrozen_groups(6, 6)
    with pytest.raises(ValueError, match="between 0 and 5 for vggface16"):
        TrainConfig(mode="finetune", backbone="vggface16", finetune_blocks=6).validate()
    TrainConfig(mode="finetune", backbone="vggface16", finetune_blocks=5).validate()
    with pytest.raises(NotImplementedError, match="cannot be fine-tuned"):
        Backbone.finetune_network(TinyNet.__new__(TinyNet))


def test_vgg_network_is_a_fresh_copy_from_crops_to_fc7(tiny_vgg: TinyVGG) -> None:
    network = tiny_vgg.finetune_network()
    crops, _ = colour_crops(3, seed=5)
    fc7 = keras.Model(tiny_vgg.model.input, tiny_vgg.model.get_layer("fc7_relu").output)
    expected = fc7.predict_on_batch(tiny_vgg.preprocess(crops))
    np.testing.assert_allclose(network.predict_on_batch(crops.astype(np.float32)), expected, rtol=1e-4, atol=1e-4)
    network.get_layer("fc7").kernel.assign(np.zeros((32, 32), np.float32))
    assert np.abs(tiny_vgg.model.get_layer("fc7").kernel.numpy()).sum() > 0, "the backbone's own weights stay"


def test_phases_freeze_and_unfreeze(tiny_vgg: TinyVGG) -> None:
    head = new_head(tiny_vgg, 3, augment=False)
    head.unfreeze(None, tiny_vgg.finetune_blocks)
    assert not any(layer.trainable for layer in head.network.layers if layer.weights)
    assert head.model.get_layer("identity").trainable
    head.unfreeze(2, tiny_vgg.finetune_blocks)
    trainable = {layer.name for layer in head.network.layers if layer.trainable and layer.weights}
    assert trainable == {"conv4_1", "conv4_2", "conv4_3", "conv5_1", "conv5_2", "conv5_3", "fc6", "fc7"}
    assert head.origin.unfrozen == (3, 4, 5)


@pytest.mark.parametrize("name", ["tiny_vgg", "tiny_net"])
def test_finetune_learns_and_leaves_the_shared_backbone_untouched(name: str, request: pytest.FixtureRequest) -> None:
    backbone = request.getfixturevalue(name)
    before = [w.copy() for w in backbone.model.get_weights()]
    crops, labels = colour_crops(24, seed=0)
    val_crops, val_labels = colour_crops(8, seed=1)
    seen: list[int] = []
    config = TrainConfig(mode="finetune", epochs=4, warmup_epochs=2, batch_size=8, learning_rate=1e-2, seed=0,
                         augment=True, early_stopping_patience=0, finetune_blocks=1)
    result = train_finetune(config, crops, labels, val_crops, val_labels, backbone,
                            on_epoch=lambda epoch, logs: seen.append(epoch))
    assert seen == [0, 1, 2, 3]
    assert result.labels == ["blue", "red"] and result.epochs_run == 4
    assert set(result.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert result.metrics["accuracy"] >= 0.75
    for a, b in zip(before, backbone.model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert result.head.embed(val_crops).shape == (8, 32 if name == "tiny_vgg" else 16)


def test_stop_request_ends_after_warmup(tiny_net: TinyNet) -> None:
    crops, labels = colour_crops(16, seed=2)
    config = TrainConfig(mode="finetune", epochs=20, warmup_epochs=1, batch_size=8, seed=0, augment=False)
    result = train_finetune(config, crops, labels, crops[:4], labels[:4], tiny_net, should_stop=lambda: True)
    assert result.stopped and result.epochs_run == 1
    assert result.head.origin.unfrozen == (), "only the identity layer learnt"


def test_one_person_and_too_many_blocks_are_refused(tiny_net: TinyNet) -> None:
    crops, labels = colour_crops(4, seed=3)
    with pytest.raises(ValueError, match="at least two people"):
        train_finetune(TrainConfig(mode="finetune"), crops, ["solo"] * 4, crops[:0], [], tiny_net)
    with pytest.raises(ValueError, match="between 0 and 2"):
        train_finetune(TrainConfig(mode="finetune", finetune_blocks=3), crops, labels, crops[:0], [], tiny_net)


def whole_size(head: FinetunedHead, tmp_path: Path) -> int:
    """What the old format stored: the whole model as one .keras file."""
    head.model.save(tmp_path / "whole.keras")
    return (tmp_path / "whole.keras").stat().st_size


@pytest.mark.parametrize(("name", "blocks", "rate", "saved"), [
    ("tiny_vgg", 1, 1e-4, {"conv5_1", "conv5_2", "conv5_3", "fc6", "fc7", "identity"}),
    ("tiny_net", 0, 1e-3, {"descriptor", "identity"}),
    ("tiny_net", 1, 1e-3, {"conv_b", "descriptor", "identity"}),  # batch normalisation stays frozen
])
def test_run_stores_only_what_it_trained_and_reloads_the_same(name: str, blocks: int, rate: float, saved: set[str],
                                                              registered: dict, tmp_path: Path) -> None:
    backbone = registered[name.replace("_", "-")]
    crops, labels = colour_crops(16, seed=4)
    config = TrainConfig(mode="finetune", epochs=3, warmup_epochs=1, batch_size=8, learning_rate=1e-2,
                         finetune_blocks=blocks, finetune_learning_rate=rate, augment=False)
    result = train_finetune(config, crops, labels, crops[:0], [], backbone)
    head = result.head
    assert result.best_epoch >= 1, "a fine-tune epoch is the best: its weights are kept, not the warm-up's"
    head.save(tmp_path / "run")
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == sorted([HEAD_FILE, ORIGIN_FILE, LAYERS_FILE])
    origin = json.loads((tmp_path / "run" / ORIGIN_FILE).read_text())
    assert (origin["backbone"], origin["weights_id"]) == (backbone.name, backbone.weights_id)
    assert origin["unfrozen"] == list(range(len(backbone.finetune_blocks) - 1 - blocks, len(backbone.finetune_blocks)))
    with np.load(tmp_path / "run" / LAYERS_FILE) as stored:
        assert {key.split("/")[0] for key in stored.files} == saved
    if name == "tiny_net":
        np.testing.assert_array_equal(head.network.get_layer("norm_b").moving_mean.numpy(), 0)
    size = sum(p.stat().st_size for p in (tmp_path / "run").iterdir())
    assert size < whole_size(head, tmp_path)

    loaded = load_head(tmp_path / "run")
    assert isinstance(loaded, FinetunedHead) and loaded.origin == head.origin
    np.testing.assert_allclose(loaded.predict_proba(crops), head.predict_proba(crops), atol=1e-5)
    np.testing.assert_allclose(loaded.embed(crops), head.embed(crops), atol=1e-5)
    pretrained = backbone.finetune_network().predict_on_batch(crops.astype(np.float32))
    assert not np.allclose(loaded.embed(crops), pretrained, atol=1e-3), "the reloaded network is the fine-tuned one"
    with pytest.raises(ValueError, match="face crops of shape"):
        loaded.predict_proba(np.zeros((2, 128), np.float32))


def test_reload_is_refused_with_other_weights_or_without_the_backbone(registered: dict, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    crops, labels = colour_crops(8, seed=6)
    config = TrainConfig(mode="finetune", epochs=1, warmup_epochs=1, batch_size=8)
    train_finetune(config, crops, labels, crops[:0], [], registered["tiny-net"]).head.save(tmp_path / "run")
    monkeypatch.setattr(registered["tiny-net"], "_weights_id", "other-weights")
    with pytest.raises(ValueError, match=r"fine-tuned from tiny-net weights tiny-net-1, but this machine has "
                                         r"other-weights; its saved layers only make sense on the weights they grew from\."):
        load_head(tmp_path / "run")
    monkeypatch.setitem(BACKBONES._entries, "tiny-net", Entry("tiny-net", "tiny-net", TinyNet,
                                                               available=lambda: "its weights are missing"))
    monkeypatch.delitem(BACKBONES._instances, ("tiny-net", ()))
    with pytest.raises(ValueError, match="fine-tuned from the tiny-net backbone, which cannot be used here: .*missing"):
        load_head(tmp_path / "run")


def test_old_whole_model_runs_still_load(tiny_vgg: TinyVGG, tmp_path: Path) -> None:
    """A run saved before only the trained layers were stored: crops → augmentation → preprocessing → a nested VGG16
    → dropout → identity, whole in model.keras."""
    vgg = keras.Model(tiny_vgg.model.input, tiny_vgg.model.get_layer("fc7_relu").output, name="vggface16")
    inputs = keras.Input((SIZE, SIZE, 3), name="crop")
    x = VGGFacePreprocess(name="vggface_preprocess")(augmentation(0)(inputs))
    x = keras.layers.Dropout(0.5, name="dropout")(vgg(x))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax", name="identity")(x))
    model.save(tmp_path / "model.keras")
    (tmp_path / HEAD_FILE).write_text(json.dumps({"kind": "finetune", "input_dim": SIZE, "n_classes": 2}))
    crops, _ = colour_crops(4, seed=7)
    loaded = load_head(tmp_path)
    assert isinstance(loaded, FinetunedHead) and loaded.origin is None
    np.testing.assert_allclose(loaded.predict_proba(crops), model.predict_on_batch(crops.astype(np.float32)), atol=1e-5)
    assert loaded.embed(crops).shape == (4, 32)


def serve(export: Path, crops: np.ndarray) -> dict[str, np.ndarray]:
    """The export's serving signature called from plain TensorFlow, as someone without FaceLab would."""
    import tensorflow as tf

    reloaded = tf.saved_model.load(str(export))  # kept in a variable: its functions need the object alive
    outputs = reloaded.signatures["serving_default"](tf.constant(crops))
    return {key: value.numpy() for key, value in outputs.items()}


@pytest.mark.parametrize("name", ["tiny_vgg", "tiny_net"])
def test_savedmodel_export_is_the_whole_network(name: str, registered: dict, tmp_path: Path) -> None:
    backbone = registered[name.replace("_", "-")]
    crops, labels = colour_crops(10, seed=8)
    config = TrainConfig(mode="finetune", epochs=2, warmup_epochs=1, batch_size=8, backbone=backbone.name,
                         weights_id=backbone.weights_id, dataset="colours")
    result = train_finetune(config, crops, labels, crops[:0], [], backbone)
    info = runs.save_run(result, config)
    assert info.name == f"fine-tuned {backbone.name} · colours"
    loaded = runs.load_run(info.id).head
    dest = runs.export_savedmodel(info.id, tmp_path / "export")
    assert json.loads((dest / "labels.json").read_text()) == ["blue", "red"]
    served = serve(dest, crops)
    assert served["probabilities"].shape == (10, 2)
    np.testing.assert_allclose(served["probabilities"], loaded.predict_proba(crops), atol=1e-5)
    np.testing.assert_allclose(served["embedding"], loaded.embed(crops), atol=1e-5)


# --- dlib's ResNet, the real thing ---------------------------------------------------------------------------


def test_dlib_resnet_fine_tunes_saves_reloads_predicts_and_exports(finetuned_dlib_run: FinetunedRun,
                                                                    tmp_path: Path) -> None:
    """One warm-up and one fine-tune epoch through the train service (the session's shared run)."""
    from core.images import load_image
    from core.pipeline.detection import DETECTORS
    from core.pipeline.embeddings import Pipeline
    from core.services.predict import EMBEDDING_SPACE, FINETUNED_SPACE, predictor_for_run

    root, result, info = finetuned_dlib_run.root, finetuned_dlib_run.outcome.result, finetuned_dlib_run.outcome.info
    assert result.epochs_run == 2 and result.head.origin.unfrozen == (5, 6), "level 0 and the descriptor trained"
    assert info.name == "fine-tuned dlib-resnet · five"
    size = sum(p.stat().st_size for p in info.path.iterdir())
    assert size < whole_size(result.head, tmp_path) / 3

    run = runs.load_run(finetuned_dlib_run.install())
    pipeline = Pipeline(DETECTORS.get("dlib-hog"), BACKBONES.get("dlib-resnet"))
    crops = {split: np.stack([pipeline.faces(load_image(root / path))[0][1].crop
                              for path in sorted(str(p.relative_to(root)) for p in (root / split).rglob("*.*"))])
             for split in ("validation", "test")}
    np.testing.assert_allclose(run.head.predict_proba(crops["validation"]), result.head.predict_proba(crops["validation"]),
                               atol=1e-5)
    assert str(run.extras[EMBEDDING_SPACE]) == FINETUNED_SPACE
    assert run.extras["train_embeddings"].shape == (9, 128)
    photos = predictor_for_run(run.info.id).predict(sorted((root / "test").rglob("*.*")))
    test_embeddings = run.head.embed(crops["test"])
    for photo, embedding in zip(photos, test_embeddings):
        face = photo.faces[0]
        assert face.distance is not None and np.allclose(face.embedding, embedding, atol=1e-5)

    served = serve(runs.export_savedmodel(run.info.id, tmp_path / "export"), crops["test"])
    np.testing.assert_allclose(served["probabilities"], run.head.predict_proba(crops["test"]), atol=1e-5)
    np.testing.assert_allclose(served["embedding"], test_embeddings, atol=1e-5)
