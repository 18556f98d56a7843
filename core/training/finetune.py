"""Training mode "finetune": VGGFace16 trained end to end on aligned face crops.

The recipe is the usual transfer-learning one, written with ``keras.layers``/``keras.ops`` only
so the same code runs on TensorFlow here and on JAX on a GPU machine:

1. crops (uint8 RGB, 224×224) → augmentation (mirror, small rotation, shift, brightness; active
   only while training) → VGG-Face preprocessing inside the model → the published conv blocks,
   fc6 and fc7 → dropout → a new softmax over the people;
2. warm-up: every pretrained layer frozen, only the new softmax learns (its random gradients
   would otherwise wreck the pretrained features);
3. fine-tune: the last ``finetune_blocks`` convolution blocks and fc6–fc7 unfrozen, recompiled
   at a learning rate 100× lower — the "lower learning rate for the pretrained layers".

The result is a :class:`~core.training.heads.finetuned.FinetunedHead`: a Head whose input is
face crops instead of embeddings, so the run store, the Train page and prediction treat both
modes alike.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import keras
import numpy as np

from core.pipeline.backbones._vggface_layers import VGGFacePreprocess
from core.pipeline.backbones.vggface16 import CONV_BLOCKS, build_vggface16
from core.training.config import EpochCallback, StopCheck, TrainConfig, TrainResult
from core.training.heads.finetuned import FinetunedHead
from core.training.metrics import class_weights, classification_metrics, encode_labels, people_to_learn
from core.training.monitor import Monitor, keras_callback


def augmentation(seed: int) -> keras.Sequential:
    """Mild, face-preserving augmentation: mirror, ±10° rotation, ±5 % shift, ±10 % brightness."""
    return keras.Sequential([
        keras.layers.RandomFlip("horizontal", seed=seed),
        keras.layers.RandomRotation(10 / 360, fill_mode="nearest", seed=seed),
        keras.layers.RandomTranslation(0.05, 0.05, fill_mode="nearest", seed=seed),
        keras.layers.RandomBrightness(0.1, value_range=(0, 255), seed=seed),
    ], name="augmentation")


def trainable_layer_names(finetune_blocks: int) -> set[str]:
    """Layers unfrozen in the fine-tune phase: conv blocks counted from the top, plus fc6 and fc7."""
    if not 0 <= finetune_blocks <= len(CONV_BLOCKS):
        raise ValueError(f"finetune_blocks must be between 0 and {len(CONV_BLOCKS)}; got {finetune_blocks}.")
    first = len(CONV_BLOCKS) - finetune_blocks + 1
    names = {f"conv{block}_{i}" for block in range(first, len(CONV_BLOCKS) + 1)
             for i in range(1, CONV_BLOCKS[block - 1][1] + 1)}
    return names | {"fc6", "fc7"}


def build_finetune_model(pretrained: keras.Model, n_classes: int, augment: bool = True, seed: int = 0) -> keras.Model:
    """A new classifier sharing nothing with ``pretrained`` (the shared backbone stays untouched).

    The pretrained weights are copied into a fresh VGG16 so concurrent sessions using the
    backbone for embeddings never see half-trained weights.
    """
    input_size = int(pretrained.input_shape[1])
    vgg = build_vggface16(include_top=True, input_size=input_size, classes=int(pretrained.output_shape[-1]),
                          fc_units=int(pretrained.get_layer("fc6").units))
    vgg.set_weights(pretrained.get_weights())
    features = keras.Model(vgg.input, vgg.get_layer("fc7_relu").output, name="vggface16")
    inputs = keras.Input((input_size, input_size, 3), name="crop")
    x = augmentation(seed)(inputs) if augment else inputs
    x = VGGFacePreprocess(name="vggface_preprocess")(x)
    x = features(x)
    x = keras.layers.Dropout(0.5, name="dropout")(x)
    outputs = keras.layers.Dense(n_classes, activation="softmax", name="identity")(x)
    return keras.Model(inputs, outputs, name="facelab_finetuned_vggface16")


def set_phase(model: keras.Model, finetune_blocks: int | None) -> None:
    """Freeze the pretrained network (warm-up, ``None``) or unfreeze its top blocks (fine-tune)."""
    backbone = model.get_layer("vggface16")
    unfrozen = set() if finetune_blocks is None else trainable_layer_names(finetune_blocks)
    for layer in backbone.layers:
        layer.trainable = layer.name in unfrozen


def train_finetune(config: TrainConfig, crops_train: np.ndarray, y_train: Sequence[str], crops_val: np.ndarray,
                   y_val: Sequence[str], pretrained: keras.Model, *, on_epoch: EpochCallback | None = None,
                   should_stop: StopCheck | None = None) -> TrainResult:
    """Warm up the new softmax, then fine-tune the top of VGGFace16; same callbacks and result as train_head."""
    names = [str(n) for n in y_train]
    if len(crops_train) == 0:
        raise ValueError("the train split has no face crops to learn from.")
    labels = people_to_learn(names)
    keras.utils.set_random_seed(config.seed)
    y_codes = encode_labels(names, labels)
    val_codes = encode_labels([str(n) for n in y_val], labels)
    known = val_codes >= 0
    crops_known, val_known = np.asarray(crops_val)[known] if len(crops_val) else crops_val, val_codes[known]
    has_val = len(val_known) > 0

    start = time.perf_counter()
    head = FinetunedHead(int(pretrained.input_shape[1]), len(labels),
                         build_finetune_model(pretrained, len(labels), config.augment, config.seed))
    monitor = Monitor(has_val, config.early_stopping_patience, on_epoch, should_stop)
    callback = keras_callback(monitor, head, crops_known, val_known)
    weights = class_weights(y_codes, len(labels)) if config.class_weighting == "balanced" else None
    warmup = min(config.warmup_epochs, config.epochs)
    set_phase(head.model, None)
    head.fit(crops_train, y_codes, epochs=warmup, batch_size=config.batch_size,
             learning_rate=config.learning_rate, class_weight=weights, callbacks=[callback])
    if config.epochs > warmup and not monitor.stopped:
        set_phase(head.model, config.finetune_blocks)
        head.fit(crops_train, y_codes, epochs=config.epochs - warmup, batch_size=config.batch_size,
                 learning_rate=config.learning_rate / 100, class_weight=weights, callbacks=[callback],
                 initial_epoch=len(monitor.history["loss"]))
    seconds = time.perf_counter() - start
    metrics = classification_metrics(val_known, head.predict(crops_known), labels) if has_val else None
    return TrainResult(head=head, labels=labels, history=monitor.history, metrics=metrics, seconds=seconds,
                       epochs_run=len(monitor.history["loss"]), stopped=monitor.stopped,
                       best_epoch=monitor.best_epoch)
