"""What eye alignment buys: recognition accuracy and verification AUC per detector and alignment variant.

Three variants, on the same detected faces (each photo is detected once per detector, its largest face kept):
  rotate    the backbone's own crop, eyes levelled (the default pipeline)
  upright   the same crop (same centre, same scale), not rotated: "align off" (--no-align)
  box       the detector box squared with a 20 % margin, not rotated (--crop box --no-align)
"rotate" vs "upright" differ only by the rotation; "upright" vs "box" only by the framing.

Recognition: nearest centroid of the train embeddings, scored per test photo (a photo where no
face was found counts as wrong). Verification: cosine AUC and EER over all pairs of the embedded
photos (every genuine pair, a sample of impostors). Prints a markdown table.

    python benchmarks/bench_alignment.py                                  # three datasets, dlib-resnet, no mirror
    python benchmarks/bench_alignment.py --datasets orl_att_faces --detectors haar --backbone vggface16
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("FACELAB_HOME", tempfile.mkdtemp(prefix="facelab-bench-"))  # never touch a real home

import numpy as np  # noqa: E402

from core.compare.calibration import auc, eer, pairs  # noqa: E402
from core.compare.distances import pair_distances  # noqa: E402
from core.data.layout import scan  # noqa: E402
from core.images import load_image  # noqa: E402
from core.pipeline.backbones import BACKBONES  # noqa: E402
from core.pipeline.backbones.base import Backbone  # noqa: E402
from core.pipeline.detection import DETECTORS  # noqa: E402
from core.pipeline.detection.base import Face  # noqa: E402
from core.training.heads.centroid import CentroidHead  # noqa: E402
from core.training.metrics import encode_labels  # noqa: E402

SHARED = Path(os.environ.get("FACELAB_SHARED_DATASETS", ROOT.parent / "shared" / "datasets"))
VARIANTS = ("rotate", "upright", "box")


@dataclass
class Detected:
    """Every labelled photo of a dataset with its split and largest face (None where none was found)."""

    images: list[np.ndarray]
    labels: list[str]
    splits: list[str]
    faces: list[Face | None]
    seconds: float


def detect(root: Path, detector_name: str) -> Detected:
    records = [r for r in scan(root).images if r.person is not None]
    images = [load_image(r.path) for r in records]
    detector = DETECTORS.get(detector_name)
    start = time.perf_counter()
    faces = [next(iter(found), None) for found in detector.detect_many(images)]
    return Detected(images, [r.person for r in records], [r.split for r in records], faces, time.perf_counter() - start)


def crop(backbone: Backbone, image: np.ndarray, face: Face, variant: str):
    """The face cut as ``variant`` cuts it (an AlignedFace)."""
    if variant == "box":
        return backbone.box_crop(image, face, rotate=False)
    return backbone.align(image, face, rotate=variant == "rotate")


def evaluate(found: Detected, backbone: Backbone, variant: str) -> dict[str, float]:
    keep = [i for i, face in enumerate(found.faces) if face is not None]
    start = time.perf_counter()
    cut = [crop(backbone, found.images[i], found.faces[i], variant) for i in keep]
    embeddings = backbone.embed(np.stack([c.crop for c in cut]))
    seconds = time.perf_counter() - start
    labels = [found.labels[i] for i in keep]
    splits = np.array([found.splits[i] for i in keep])
    train = splits == "train"
    people = sorted(set(np.array(labels)[train]))
    head = CentroidHead(embeddings.shape[1], len(people))
    head.fit(embeddings[train], encode_labels(list(np.array(labels)[train]), people))
    test = splits == "test"
    right = int((head.predict(embeddings[test]) == encode_labels(list(np.array(labels)[test]), people)).sum())
    genuine, impostor = pairs(labels)
    g = pair_distances(embeddings, genuine, ("cosine",))["cosine"]
    i = pair_distances(embeddings, impostor, ("cosine",))["cosine"]
    angles = [abs(c.angle) for c in cut if c.aligned]
    return {"found": len(keep) / len(found.faces), "accuracy": right / found.splits.count("test"),
            "auc": auc(g, i), "eer": eer(g, i)[0], "seconds": seconds,
            "rotation": float(np.median(angles)) if angles else 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+",
                        default=["five_celebrity_faces", "glint360k_celebrity_sample", "orl_att_faces"])
    parser.add_argument("--detectors", nargs="+", default=["haar", "mtcnn", "dlib-hog"])
    parser.add_argument("--backbone", default="dlib-resnet")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--flip", action="store_true",
                        help="dlib-resnet: average each descriptor with its mirror image's (the app's default; 2× slower)")
    args = parser.parse_args()
    backbone = BACKBONES.get(args.backbone, **({"flip_average": args.flip} if args.backbone == "dlib-resnet" else {}))
    print(f"backbone {backbone.cache_key()}; test accuracy per test photo (nearest centroid, no face = wrong), "
          "cosine AUC/EER over all embedded photos; median |rotation| of the rotate variant\n")
    print("| dataset | detector | variant | faces found | median rotation | test accuracy | AUC | EER | detect s | crop+embed s |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for name in args.datasets:
        for detector in args.detectors:
            found = detect(SHARED / name, detector)
            for variant in args.variants:
                r = evaluate(found, backbone, variant)
                rotation = f"{r['rotation']:.1f}°" if variant == "rotate" else "0°"
                print(f"| {name} | {detector} | {variant} | {r['found']:.1%} | {rotation} | {r['accuracy']:.1%} "
                      f"| {r['auc']:.4f} | {r['eer']:.1%} | {found.seconds:.0f} | {r['seconds']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
