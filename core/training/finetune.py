"""Training mode "finetune": a backbone's own face network retrained end to end on aligned face crops.

It works for any backbone with ``fine_tunable`` set (see :class:`~core.pipeline.backbones.base.Backbone`):
the backbone hands over a fresh copy of its network (crops in, preprocessing inside, embedding out),
the groups of layers that may be unfrozen, a dropout rate and its pace; this module knows nothing
else about it. The recipe is the usual transfer-learning one, written with ``keras.layers`` /
``keras.ops`` only so the same code runs on TensorFlow here and on JAX on a GPU machine:

1. crops (uint8 RGB) → augmentation (mirror, small rotation, shift, brightness; active only while
   training) → the backbone's network → dropout → a new softmax over the people ("identity");
2. warm-up: the whole pretrained network frozen, only the new softmax learns (its random gradients
   would otherwise wreck the pretrained features);
3. fine-tune: the network's top group of layers and ``finetune_blocks`` groups below it unfrozen,
   recompiled at a lower learning rate (``TrainConfig.finetune_learning_rate``, by default the
   warm-up's / 100).

The loss is plain softmax cross-entropy with class weights: no margin loss (CosFace, ArcFace) was
measured against it, so none is offered.

The result is a :class:`~core.training.heads.finetuned.FinetunedHead`: a Head whose input is face
crops instead of embeddings, so the run store, the Train page and prediction treat both modes alike.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import keras
import numpy as np

from core.pipeline.backbones import Backbone
from core.training.config import EpochCallback, StopCheck, TrainConfig, TrainResult
from core.training.heads.finetuned import FinetunedHead, Origin, build_classifier
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


def new_head(backbone: Backbone, n_classes: int, augment: bool = True, seed: int = 0) -> FinetunedHead:
    """A fine-tuned head to train: a fresh copy of the backbone's network (the shared backbone stays untouched)."""
    network = backbone.finetune_network()
    model = build_classifier(network, n_classes, backbone.finetune_dropout, augmentation(seed) if augment else None)
    origin = Origin(backbone.name, backbone.weights_id, len(backbone.finetune_blocks))
    return FinetunedHead(int(network.input_shape[1]), n_classes, model, network, origin)


def train_finetune(config: TrainConfig, crops_train: np.ndarray, y_train: Sequence[str], crops_val: np.ndarray,
                   y_val: Sequence[str], backbone: Backbone, *, on_epoch: EpochCallback | None = None,
                   should_stop: StopCheck | None = None) -> TrainResult:
    """Warm up the new softmax, then fine-tune the top of the backbone's network; same callbacks and result as
    train_head."""
    names = [str(n) for n in y_train]
    if len(crops_train) == 0:
        raise ValueError("the train split has no face crops to learn from.")
    labels = people_to_learn(names)
    config.check_backbone(backbone)  # before the network is copied
    groups = backbone.finetune_blocks
    keras.utils.set_random_seed(config.seed)
    y_codes = encode_labels(names, labels)
    val_codes = encode_labels([str(n) for n in y_val], labels)
    known = val_codes >= 0
    crops_known, val_known = np.asarray(crops_val)[known] if len(crops_val) else crops_val, val_codes[known]
    has_val = len(val_known) > 0

    start = time.perf_counter()
    head = new_head(backbone, len(labels), config.augment, config.seed)
    monitor = Monitor(has_val, config.early_stopping_patience, on_epoch, should_stop)
    callback = keras_callback(monitor, head, crops_known, val_known)
    weights = class_weights(y_codes, len(labels)) if config.class_weighting == "balanced" else None
    warmup = min(config.warmup_epochs, config.epochs)
    head.unfreeze(None, groups)
    head.fit(crops_train, y_codes, epochs=warmup, batch_size=config.batch_size,
             learning_rate=config.learning_rate, class_weight=weights, callbacks=[callback])
    if config.epochs > warmup and not monitor.stopped:
        head.unfreeze(config.finetune_blocks, groups)
        head.fit(crops_train, y_codes, epochs=config.epochs - warmup, batch_size=config.batch_size,
                 learning_rate=config.finetune_rate, class_weight=weights, callbacks=[callback],
                 initial_epoch=len(monitor.history["loss"]))
    seconds = time.perf_counter() - start
    metrics = classification_metrics(val_known, head.predict(crops_known), labels) if has_val else None
    return TrainResult(head=head, labels=labels, history=monitor.history, metrics=metrics, seconds=seconds,
                       epochs_run=len(monitor.history["loss"]), stopped=monitor.stopped,
                       best_epoch=monitor.best_epoch)
