"""dlib's ResNet in Keras and ONNX: speed and accuracy of the dlib-resnet backbone's three engines on the same chips.

Chips: every photo of a split through dlib's HOG detector (upsampled once), the 5-point predictor
and ``dlib.get_face_chip`` (150 px, padding 0.25), as dlib's own example does; a photo where HOG
finds no face is described from a box around the whole photo (counted as "no face"), so the
engines always see identical chips. All mirror-average (the backbone's default).

- speed: photos/s through ``DlibResNet.embed`` — engine "dlib" (dlib's C++ in one worker process
  per core), engine "keras" (the Keras twin, batches of 32 chips + their mirrors, TensorFlow) and engine
  "onnx" (the same batches on ONNX Runtime), the best of ``--repeats`` interleaved rounds, then the largest
  descriptor differences from dlib's;
- accuracy per dataset and engine: identification on the test split by the nearest train centroid
  and by the nearest train photo (euclidean), and verification AUC / EER over every pair of test
  photos (euclidean, dlib's documented metric);
- ``--finetune``: images/s of a fine-tuning step of the Keras twin (top two levels and the descriptor
  unfrozen, a new softmax on top, Adam, batch 16) — the backbone's ``finetune_images_per_second``.

    python benchmarks/bench_dlib_keras.py
    python benchmarks/bench_dlib_keras.py --datasets five_celebrity_faces --finetune
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from itertools import combinations
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("FACELAB_HOME", tempfile.mkdtemp(prefix="facelab-bench-"))  # never touch a real home

from core.compare.calibration import auc, eer  # noqa: E402
from core.compare.distances import pairwise_distances  # noqa: E402
from core.data.layout import scan  # noqa: E402
from core.images import load_image  # noqa: E402
from core.pipeline.backbones import BACKBONES  # noqa: E402

SHARED = Path(os.environ.get("FACELAB_SHARED_DATASETS", ROOT.parent / "shared" / "datasets"))
DATASETS = ["five_celebrity_faces", "glint360k_celebrity_sample", "orl_att_faces"]
ENGINES = ("dlib", "keras", "onnx")


def chips(root: Path, split: str) -> tuple[np.ndarray, list[str], int]:
    """The split's face chips, their people and how many photos had no HOG face."""
    import dlib
    import face_recognition_models

    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(face_recognition_models.pose_predictor_five_point_model_location())
    out, people, missed = [], [], 0
    for record in scan(root).images:
        if record.split != split or record.person is None:
            continue
        image = load_image(record.path)
        found = detector(image, 1)
        if not found:
            missed += 1
        box = max(found, key=lambda rect: rect.area()) if found else dlib.rectangle(0, 0, image.shape[1] - 1,
                                                                                    image.shape[0] - 1)
        out.append(dlib.get_face_chip(image, predictor(image, box), size=150, padding=0.25))
        people.append(record.person)
    return np.stack(out), people, missed


def accuracy(train: np.ndarray, train_people: list[str], test: np.ndarray, test_people: list[str]) -> dict[str, float]:
    """Nearest-centroid and 1-NN identification accuracy, and verification AUC / EER over all test pairs."""
    names = sorted(set(train_people))
    centroids = np.stack([train[[p == name for p in train_people]].mean(axis=0) for name in names])
    to_centroid = pairwise_distances(test, centroids, "euclidean")
    to_photo = pairwise_distances(test, train, "euclidean")
    truth = np.asarray(test_people)
    centroid_acc = float(np.mean(np.asarray(names)[to_centroid.argmin(axis=1)] == truth))
    nn_acc = float(np.mean(np.asarray(train_people)[to_photo.argmin(axis=1)] == truth))
    among = pairwise_distances(test, test, "euclidean")
    genuine, impostor = [], []
    for i, j in combinations(range(len(test)), 2):
        (genuine if truth[i] == truth[j] else impostor).append(among[i, j])
    return {"centroid": centroid_acc, "nn": nn_acc, "auc": auc(genuine, impostor), "eer": eer(genuine, impostor)[0],
            "pairs": len(genuine) + len(impostor)}


def timed(embed, crops: np.ndarray) -> tuple[np.ndarray, float]:  # noqa: ANN001 - a backbone's embed
    start = time.perf_counter()
    out = embed(crops)
    return out, time.perf_counter() - start


def speed(crops: np.ndarray, repeats: int) -> None:
    backbones = {engine: BACKBONES.get("dlib-resnet", engine=engine) for engine in ENGINES}
    first = {engine: timed(backbone.embed, crops[:8]) for engine, backbone in backbones.items()}  # warm-up
    rates = dict.fromkeys(ENGINES, 0.0)
    for _ in range(repeats):
        for engine, backbone in backbones.items():
            rates[engine] = max(rates[engine], len(crops) / timed(backbone.embed, crops)[1])
    vectors = {engine: backbone.embed(crops) for engine, backbone in backbones.items()}
    print(f"\n### Speed: {len(crops)} chips, mirror-averaged, best of {repeats}\n")
    print("| engine | first 8 chips s (incl. start) | photos/s |")
    print("|---|---:|---:|")
    for engine in ENGINES:
        print(f"| {engine} | {first[engine][1]:.2f} | {rates[engine]:.1f} |")
    for engine in ENGINES[1:]:
        print(f"\nlargest |{engine} − dlib| descriptor difference: {np.abs(vectors[engine] - vectors['dlib']).max():.2e}")


def accuracy_table(datasets: list[str]) -> np.ndarray | None:
    print("\n### Accuracy (test split; identification against the train split; verification on all test pairs)\n")
    print("| dataset | engine | train / test photos | no HOG face | nearest centroid | 1-NN | AUC | EER | pairs |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    sample = None
    for name in datasets:
        root = SHARED / name
        if not root.is_dir():
            print(f"| {name} | (absent at {root}) |")
            continue
        train, train_people, missed_train = chips(root, "train")
        test, test_people, missed_test = chips(root, "test")
        sample = train if sample is None else sample
        for engine in ENGINES:
            backbone = BACKBONES.get("dlib-resnet", engine=engine)
            row = accuracy(backbone.embed(train), train_people, backbone.embed(test), test_people)
            print(f"| {name} | {engine} | {len(train)} / {len(test)} | {missed_train + missed_test} | "
                  f"{row['centroid']:.2%} | {row['nn']:.2%} | {row['auc']:.4f} | {row['eer']:.2%} | {row['pairs']} |",
                  flush=True)
    return sample


def finetune_pace(crops: np.ndarray, steps: int) -> None:
    """Images/s of fine-tuning steps with the top two levels and the descriptor trainable (as the Train page would)."""
    import keras

    from core.pipeline.backbones._dlib_dat import BLOCKS

    network = BACKBONES.get("dlib-resnet", engine="keras").finetune_network()
    trainable = {name for group in BLOCKS[-3:] for name in group}
    for layer in network.layers:
        layer.trainable = layer.name in trainable
    outputs = keras.layers.Dense(5, activation="softmax", name="identity")(network.output)
    model = keras.Model(network.input, outputs)
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="sparse_categorical_crossentropy")
    batch = 16
    x = np.resize(crops, (batch, *crops.shape[1:])).astype(np.float32)
    y = np.arange(batch) % 5
    model.train_on_batch(x, y)  # warm-up: graph tracing
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    rate = steps * batch / (time.perf_counter() - start)
    print(f"\n### Fine-tuning pace: {rate:.1f} images/s (batch {batch}, {steps} steps, groups "
          f"{', '.join(group[0].split('_')[0] for group in BLOCKS[-3:])} trainable)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=DATASETS)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--finetune", action="store_true", help="also measure a fine-tuning step's images/s")
    parser.add_argument("--steps", type=int, default=10, help="fine-tuning steps timed")
    args = parser.parse_args()

    import tensorflow as tf

    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"TensorFlow {tf.__version__}, GPU: {bool(tf.config.list_physical_devices('GPU'))}")
    sample = accuracy_table(args.datasets)
    if sample is None:
        return
    speed(sample, args.repeats)
    if args.finetune:
        finetune_pace(sample, args.steps)


if __name__ == "__main__":
    main()
