"""Training benchmarks: offline accuracy per dataset, head speed on warm embeddings, fine-tuning images/s.

    python benchmarks/bench_training.py                 # everything below
    python benchmarks/bench_training.py --skip-finetune
    KERAS_BACKEND=jax python benchmarks/bench_training.py --only-finetune   # e.g. on a GPU machine

Accuracy: mtcnn + dlib-resnet, head mode, test accuracy per photo with a face (and photos without).
Speed: 100 epochs of each head on five_celebrity's cached embeddings (the second training
computes no embedding: the embedding pass is timed too). Fine-tuning: VGGFace16 with random
weights (timing only), one warm-up epoch (frozen) and one fine-tune epoch (last block + fc6–fc7)
over 32 crops; images/s per phase. Keras backend from KERAS_BACKEND (TensorFlow by default).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

SHARED = ROOT.parent / "shared" / "datasets"


def accuracy_table(datasets: list[str]) -> None:
    from core.pipeline.backbones import BACKBONES
    from core.pipeline.detection import DETECTORS
    from core.pipeline.embeddings import Pipeline
    from core.services.train import train_on_dataset
    from core.training.config import TrainConfig

    pipeline = Pipeline(DETECTORS.get("mtcnn"), BACKBONES.get("dlib-resnet"))
    print("| dataset | head | val accuracy | test accuracy | test photos without a face | train s |")
    print("|---|---|---:|---:|---:|---:|")
    for name in datasets:
        for head in ("softmax", "notebook", "centroid"):
            outcome = train_on_dataset(SHARED / name, pipeline, TrainConfig(head=head))
            info, result, report = outcome.info, outcome.result, outcome.report
            print(f"| {name} | {head} | {info.val_accuracy:.1%} | {info.test_accuracy:.1%} "
                  f"| {len(report['test']['no_face'])} | {result.seconds:.1f} |", flush=True)


def head_speed() -> None:
    from core.pipeline.backbones import BACKBONES
    from core.pipeline.detection import DETECTORS
    from core.pipeline.embeddings import Pipeline, embed_dataset
    from core.training.config import TrainConfig
    from core.training.fit import train_head

    pipeline = Pipeline(DETECTORS.get("mtcnn"), BACKBONES.get("dlib-resnet"))
    embed_dataset(SHARED / "five_celebrity_faces", pipeline)
    start = time.perf_counter()
    splits = embed_dataset(SHARED / "five_celebrity_faces", pipeline)
    warm = time.perf_counter() - start
    print(f"\nsecond embedding pass over five_celebrity (all cached): {warm:.2f} s\n")
    print("| head | 100 epochs on 76 × 128-d, incl. model build (s) |\n|---|---:|")
    train, val = splits["train"], splits["validation"]
    for head in ("softmax", "notebook", "centroid"):
        config = TrainConfig(head=head, epochs=100, early_stopping_patience=0)
        start = time.perf_counter()
        train_head(config, train.embeddings, train.labels, val.embeddings, val.labels)
        print(f"| {head} | {time.perf_counter() - start:.2f} |", flush=True)


def finetune_speed(n: int = 32) -> None:
    import keras

    from core.pipeline.backbones.vggface16 import VGGFace16
    from core.training.finetune import build_finetune_model, set_phase
    from core.training.heads.finetuned import FinetunedHead

    backbone = VGGFace16(weights="random")
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, (n, 224, 224, 3), dtype=np.uint8)
    labels = np.arange(n) % 4
    head = FinetunedHead(224, 4, build_finetune_model(backbone.model, 4))
    print(f"\nfine-tuning VGGFace16 (random weights, backend {keras.backend.backend()}), batch 16, {n} crops per epoch\n")
    print("| phase | images/s (first epoch, includes tracing) | images/s (second epoch) |\n|---|---:|---:|")
    for phase, blocks in (("warm-up (all frozen)", None), ("fine-tune (conv5 + fc6–fc7)", 1)):
        set_phase(head.model, blocks)
        rates = []
        for _ in range(2):
            start = time.perf_counter()
            head.fit(crops, labels, epochs=1, batch_size=16, learning_rate=1e-4)
            rates.append(n / (time.perf_counter() - start))
        print(f"| {phase} | {rates[0]:.2f} | {rates[1]:.2f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["five_celebrity_faces", "glint360k_celebrity_sample", "orl_att_faces"])
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument("--skip-finetune", action="store_true")
    parser.add_argument("--only-finetune", action="store_true", help="just the fine-tuning speed (e.g. on JAX)")
    args = parser.parse_args()
    os.environ.setdefault("FACELAB_HOME", tempfile.mkdtemp(prefix="facelab-bench-"))
    if not args.only_finetune:
        if not args.skip_accuracy:
            accuracy_table(args.datasets)
        head_speed()
    if not args.skip_finetune:
        finetune_speed()


if __name__ == "__main__":
    main()
