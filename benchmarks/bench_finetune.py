"""Fine-tuning dlib's ResNet vs a head on its frozen embeddings: accuracy, verification on test pairs, speed.

    python benchmarks/bench_finetune.py                                   # three datasets, head + blocks 0, 1, 2
    python benchmarks/bench_finetune.py --datasets glint360k_celebrity_sample --blocks 1 --seeds 0 1 2
    KERAS_BACKEND=jax python benchmarks/bench_finetune.py                 # e.g. on a GPU machine

Pipeline: MTCNN + dlib-resnet (dlib engine, mirror-averaged: the frozen embedding, cached in one temporary
FACELAB_HOME for the whole run). Per dataset, rows through ``core.services.train.train_on_dataset``:
a softmax head with TrainConfig's defaults, then fine-tune mode at each ``--blocks`` (groups unfrozen below
the descriptor) with the rest of ``DlibResNet.finetune_defaults``; each row once per ``--seeds`` (TrainConfig.seed:
initialisation, shuffling, augmentation), to show how much a figure moves by chance alone. Columns: val and test accuracy (the
run's own figures, photos with a face), verification AUC / EER over every pair of the test split's faces
(genuine = same person) with the frozen embedding and with the run's fine-tuned one
(``FinetunedHead.embed`` on the test crops, one view), training seconds and fine-tuning images/s (train
crops × epochs run / training seconds; validation passes included). Both embeddings are compared on
cosine; a per-dataset line adds the frozen embedding on euclidean (dlib's documented metric) and as a
single unmirrored view (the Keras twin, so exactly the fine-tuned network before training).
Nothing is chosen on the test split: every row's settings are fixed before it runs.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("FACELAB_HOME", tempfile.mkdtemp(prefix="facelab-bench-"))  # one home: embeddings cached across rows

import numpy as np  # noqa: E402

from core.compare.calibration import auc, eer  # noqa: E402
from core.compare.distances import pairwise_distances  # noqa: E402

if TYPE_CHECKING:
    from core.pipeline.backbones import Backbone
    from core.pipeline.embeddings import Pipeline

SHARED = Path(os.environ.get("FACELAB_SHARED_DATASETS", ROOT.parent / "shared" / "datasets"))
DATASETS = ["five_celebrity_faces", "glint360k_celebrity_sample", "orl_att_faces"]


def verification(embeddings: np.ndarray, labels: Sequence[str], metric: str = "cosine") -> tuple[float, float, int, int]:
    """AUC, EER and the genuine / impostor counts over every pair (i < j) of ``embeddings``.

    Every pair rather than ``calibration.pairs``, which samples impostors (at least 2,000): the test
    splits are small enough to use them all, so no sample decides a figure.
    """
    among = pairwise_distances(embeddings, embeddings, metric)
    first, second = np.triu_indices(len(labels), 1)
    truth = np.asarray(labels)
    same = truth[first] == truth[second]
    distances = among[first, second]
    genuine, impostor = distances[same], distances[~same]
    return auc(genuine, impostor), eer(genuine, impostor)[0], int(same.sum()), int((~same).sum())


def cell(result: tuple[float, float, int, int]) -> str:
    return f"{result[0]:.4f} / {result[1]:.2%}"


def bench_dataset(name: str, blocks: Sequence[int], seeds: Sequence[int], pipeline: Pipeline, keras_view: Backbone) -> None:
    from core.pipeline.backbones.dlib_resnet import DlibResNet
    from core.pipeline.embeddings import embed_dataset
    from core.services.train import _largest_crops, train_on_dataset  # the crops fine-tuning itself learns from
    from core.training.config import TrainConfig

    root = SHARED / name
    if not root.is_dir():
        print(f"| {name} | (absent at {root}) |")
        return
    start = time.perf_counter()
    test = embed_dataset(root, pipeline, splits=["test"])["test"]
    crops = _largest_crops(root, test.paths, pipeline)
    frozen = verification(test.embeddings, test.labels)
    frozen_euclidean = verification(test.embeddings, test.labels, "euclidean")
    single_view = verification(keras_view.embed(crops), test.labels)
    print(f"<!-- {name}: test split {len(test.paths)} faces of {test.photos} photos, {frozen[2]} genuine / "
          f"{frozen[3]} impostor pairs; frozen embedding AUC / EER: cosine {cell(frozen)}, euclidean "
          f"{cell(frozen_euclidean)}, one view (no mirror) cosine {cell(single_view)}; "
          f"{time.perf_counter() - start:.0f} s -->", flush=True)
    configs = [("head", "—", TrainConfig(head="softmax", seed=seed)) for seed in seeds]
    configs += [("finetune", str(b), TrainConfig(mode="finetune", seed=seed,
                                                 **{**DlibResNet.finetune_defaults, "finetune_blocks": b}))
                for b in blocks for seed in seeds]
    for mode, block, config in configs:
        start = time.perf_counter()
        outcome = train_on_dataset(root, pipeline, config)
        wall = time.perf_counter() - start
        info, result, report = outcome.info, outcome.result, outcome.report
        tuned, rate = "—", "—"
        if mode == "finetune":
            tuned = cell(verification(result.head.embed(crops), test.labels))
            rate = f"{report['train']['used'] * result.epochs_run / result.seconds:.1f}"
        print(f"| {name} | {mode} | {block} | {config.seed} | {info.val_accuracy:.1%} | {info.test_accuracy:.1%} | "
              f"{report['test']['used']} / {report['test']['photos']} | {cell(frozen)} | {tuned} | "
              f"{result.epochs_run} | {result.seconds:.0f} | {wall:.0f} | {rate} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=DATASETS)
    parser.add_argument("--blocks", nargs="+", type=int, default=[0, 1, 2],
                        help="fine-tune rows: groups unfrozen below the descriptor (finetune_blocks)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0], help="one row per training seed")
    args = parser.parse_args()

    import keras

    from core.pipeline.backbones import BACKBONES
    from core.pipeline.detection import DETECTORS
    from core.pipeline.embeddings import Pipeline

    pipeline = Pipeline(DETECTORS.get("mtcnn"), BACKBONES.get("dlib-resnet"))
    keras_view = BACKBONES.get("dlib-resnet", engine="keras", flip_average=False)
    print(f"<!-- {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, Keras "
          f"{keras.__version__} on {keras.backend.backend()}, load average {os.getloadavg()[0]:.1f}, "
          f"FACELAB_HOME {os.environ['FACELAB_HOME']} -->\n")
    print("| dataset | mode | blocks | seed | val accuracy | test accuracy | test faces / photos | frozen AUC / EER (cos) | "
          "fine-tuned AUC / EER (cos) | epochs | train s | row s | images/s |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in args.datasets:
        bench_dataset(name, args.blocks, args.seeds, pipeline, keras_view)
    print(f"\n<!-- load average at the end {os.getloadavg()[0]:.1f} -->")


if __name__ == "__main__":
    main()
