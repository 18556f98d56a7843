"""The train service: a dataset folder in, a saved run out (scan, embed, train, threshold, save).

The CLI's ``train`` and the Train page's background job both call :func:`train_on_dataset`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from core.compare.unknown import calibrate_max_distance
from core.data.layout import fingerprint, scan
from core.images import load_image
from core.pipeline.embeddings import embed_dataset
from core.runs import save_run
from core.training.config import EpochCallback, StopCheck, TrainConfig, TrainResult
from core.training.fit import train_head
from core.training.metrics import classification_metrics, encode_labels


def _largest_crops(root: Path, paths: Sequence[str], pipeline: Any) -> np.ndarray:
    """Aligned crops of each photo's largest face (fine-tuning learns from pixels, not embeddings)."""

    crops = [pipeline.faces(load_image(root / path))[0][1].crop for path in paths]
    size = pipeline.backbone.input_size
    return np.stack(crops) if crops else np.zeros((0, size, size, 3), np.uint8)


def train_on_dataset(root: Path | str, pipeline: Any, config: TrainConfig, *, progress: Callable[[int, int], None] | None = None,
                     on_epoch: EpochCallback | None = None, should_stop: StopCheck | None = None,
                     name: str | None = None) -> tuple[Any, TrainResult, dict[str, Any]]:
    """Embed (or crop) a dataset, train in the configured mode, evaluate on test, save a run.

    Returns (RunInfo, TrainResult, report); the report lists photos skipped per split (no face,
    unreadable) and those whose largest face was used among several — nothing is dropped silently.
    """

    config.validate()
    dataset = scan(root)
    config.dataset, config.dataset_fingerprint = str(dataset.root), fingerprint(dataset)
    config.detector, config.align = pipeline.detector.name, pipeline.align
    config.extra["detector_settings"] = dict(pipeline.detector.settings)
    config.backbone, config.weights_id = pipeline.backbone.name, pipeline.backbone.weights_id
    if config.mode == "finetune" and not pipeline.backbone.fine_tunable:
        raise ValueError(f"the {pipeline.backbone.name} backbone cannot be fine-tuned; use mode 'head'.")
    splits = embed_dataset(dataset.root, pipeline, progress=progress)
    train = splits.get("train")
    if train is None or not train.paths:
        raise ValueError("the train split has no photo with a face: nothing to learn from.")
    val, test = splits.get("validation"), splits.get("test")
    report = {name_: {"photos": s.photos, "used": len(s.paths), "no_face": s.no_face, "errors": s.errors,
                      "many_faces": s.many_faces} for name_, s in splits.items()}
    if config.mode == "finetune":
        from core.training.finetune import train_finetune  # lazy: imports Keras and TensorFlow, only fine-tune runs pay for it

        size = pipeline.backbone.input_size
        crops_val = _largest_crops(dataset.root, val.paths, pipeline) if val else np.zeros((0, size, size, 3), np.uint8)
        result = train_finetune(config, _largest_crops(dataset.root, train.paths, pipeline), train.labels, crops_val,
                                val.labels if val else [], pipeline.backbone.model, on_epoch=on_epoch,
                                should_stop=should_stop)
    else:
        result = train_head(config, train.embeddings, train.labels, val.embeddings if val else None,
                            val.labels if val else None, on_epoch=on_epoch, should_stop=should_stop)
    test_metrics = None
    if test is not None and test.paths and all(label is not None for label in test.labels):
        inputs = _largest_crops(dataset.root, test.paths, pipeline) if config.mode == "finetune" else test.embeddings
        codes = encode_labels(test.labels, result.labels)
        known = codes >= 0
        if known.any():
            test_metrics = classification_metrics(codes[known], result.head.predict(inputs[known]), result.labels)
            test_metrics["no_face"] = len(test.no_face)
    max_distance = calibrate_max_distance(train.embeddings, train.labels, val.embeddings, val.labels) if val else None
    extras = {"train_embeddings": train.embeddings, "train_labels": np.array(train.labels, dtype=str),
              "train_paths": np.array(train.paths, dtype=str),
              "unknown_max_distance": np.float32(np.nan if max_distance is None else max_distance)}
    info = save_run(result, config, extras, name=name, test_metrics=test_metrics)
    return info, result, report
