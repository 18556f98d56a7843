"""What eye alignment buys: recognition accuracy and verification AUC with alignment on vs off, per detector.

For each detector × alignment setting, every photo of the dataset is embedded (largest face).
Recognition: nearest centroid of the train embeddings, scored per test photo (a photo where
no face was found counts as wrong). Verification: cosine AUC and EER over all pairs of the
embedded photos (every genuine pair, a sample of impostors). Prints a markdown table.

    python benchmarks/bench_alignment.py                                  # five_celebrity + glint, dlib-resnet
    python benchmarks/bench_alignment.py --datasets orl_att_faces --backbone vggface16
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


def evaluate(dataset: Path, detector: str, align: bool, backbone: str) -> dict[str, float]:
    from core.compare.calibration import auc, eer, pairs
    from core.compare.distances import pair_distances
    from core.pipeline.backbones import BACKBONES
    from core.pipeline.detection import DETECTORS
    from core.pipeline.embeddings import Pipeline, embed_dataset
    from core.training.heads.centroid import CentroidHead
    from core.training.metrics import encode_labels

    pipeline = Pipeline(DETECTORS.get(detector), BACKBONES.get(backbone), align=align)
    start = time.perf_counter()
    splits = embed_dataset(dataset, pipeline)
    seconds = time.perf_counter() - start
    train, test = splits["train"], splits["test"]
    people = sorted(set(train.labels))
    head = CentroidHead(train.embeddings.shape[1], len(people))
    head.fit(train.embeddings, encode_labels(train.labels, people))
    right = int((head.predict(test.embeddings) == encode_labels(test.labels, people)).sum())
    accuracy = right / test.photos
    everything = np.concatenate([s.embeddings for s in splits.values()])
    labels = [label for s in splits.values() for label in s.labels]
    genuine, impostor = pairs(labels)
    g = pair_distances(everything, genuine, ("cosine",))["cosine"]
    i = pair_distances(everything, impostor, ("cosine",))["cosine"]
    aligned = sum(s.photos - len(s.no_face) - len(s.errors) for s in splits.values())
    return {"accuracy": accuracy, "auc": auc(g, i), "eer": eer(g, i)[0], "found": aligned / sum(s.photos for s in splits.values()),
            "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["five_celebrity_faces", "glint360k_celebrity_sample"])
    parser.add_argument("--detectors", nargs="+", default=["haar", "mtcnn", "dlib-hog"])
    parser.add_argument("--backbone", default="dlib-resnet")
    args = parser.parse_args()
    os.environ.setdefault("FACELAB_HOME", tempfile.mkdtemp(prefix="facelab-bench-"))
    print(f"backbone {args.backbone}; test accuracy per photo (nearest centroid), cosine AUC/EER over all embedded photos\n")
    print("| dataset | detector | align | faces found | test accuracy | AUC | EER | embed s |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for name in args.datasets:
        for detector in args.detectors:
            for align in (True, False):
                r = evaluate(SHARED / name, detector, align, args.backbone)
                print(f"| {name} | {detector} | {'on' if align else 'off'} | {r['found']:.1%} | {r['accuracy']:.1%} "
                      f"| {r['auc']:.4f} | {r['eer']:.1%} | {r['seconds']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
