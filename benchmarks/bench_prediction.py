"""Prediction benchmark: throughput on warm models (cold vs warm embedding cache) and test-split accuracy.

For each detector (with the dlib ResNet backbone) a run is trained on five_celebrity and on the
glint360k sample in a throw-away FaceLab home; the test split of each is then predicted twice:
once with an empty embedding cache (detect + align + embed every photo) and once with the cache
filled by the first pass. Models are warmed up before timing. Prints one markdown table.

    python benchmarks/bench_prediction.py [--detectors mtcnn dlib-hog] [--datasets five_celebrity_faces ...]
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

SHARED = Path(os.environ.get("FACELAB_SHARED_DATASETS", ROOT.parent / "shared" / "datasets"))


def measure(dataset: Path, detector: str, settings: dict, head: str) -> dict:
    """Train on ``dataset`` and time two predictions of its test split (cold cache, then warm)."""
    from core.pipeline.backbones import BACKBONES
    from core.pipeline.detection import DETECTORS
    from core.pipeline.embeddings import Pipeline
    from core.runs import load_run
    from core.services.predict import Predictor, accuracy, photo_sources
    from core.services.train import train_on_dataset
    from core.training.config import TrainConfig

    pipeline = Pipeline(DETECTORS.get(detector, **settings), BACKBONES.get("dlib-resnet"))
    with tempfile.TemporaryDirectory() as train_home, tempfile.TemporaryDirectory() as predict_home:
        os.environ["FACELAB_HOME"] = train_home
        start = time.perf_counter()
        info = train_on_dataset(dataset, pipeline, TrainConfig(head=head)).info
        train_seconds = time.perf_counter() - start
        predictor = Predictor(load_run(info.id), pipeline)  # this pipeline, settings included
        os.environ["FACELAB_HOME"] = predict_home  # an empty embedding cache for the cold pass
        paths, truths = photo_sources(dataset)
        predictor.predict([dataset / predictor.gallery_paths[0]])  # warm the models on a training photo
        timings = []
        for _ in range(2):
            start = time.perf_counter()
            photos = predictor.predict(paths, truths)
            timings.append(time.perf_counter() - start)
    correct = sum(p.correct is True for p in photos)
    return {"train_s": train_seconds, "cold": len(paths) / timings[0], "warm": len(paths) / timings[1],
            "correct": correct, "photos": len(photos), "accuracy": accuracy(photos) or 0.0,
            "no_face": sum(p.error is None and not p.faces for p in photos),
            "unknown": sum(p.predicted == "unknown" for p in photos)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detectors", nargs="+", default=["mtcnn", "mtcnn@0.8", "dlib-hog"],
                        help="detector names; name@c sets mtcnn's min_confidence to c")
    parser.add_argument("--datasets", nargs="+", default=["five_celebrity_faces", "glint360k_celebrity_sample"])
    parser.add_argument("--head", default="softmax")
    args = parser.parse_args()
    rows = []
    for dataset in args.datasets:
        root = SHARED / dataset
        if not root.is_dir():
            print(f"skipping {dataset}: not found at {root}", file=sys.stderr)
            continue
        for spec in args.detectors:
            name, _, confidence = spec.partition("@")
            settings = {"min_confidence": float(confidence)} if confidence else {}
            print(f"{dataset} · {spec} …", file=sys.stderr, flush=True)
            result = measure(root, name, settings, args.head)
            rows.append((dataset, spec, result))
    print(f"\n| dataset | detector (+ dlib-resnet, {args.head}) | test photos named right | no face | unknown "
          "| predict img/s, cold cache | warm cache | train s |")
    print("|---|---|---|---|---|---|---|---|")
    for dataset, spec, r in rows:
        print(f"| {dataset} | {spec} | {r['correct']}/{r['photos']} ({r['accuracy']:.1%}) | {r['no_face']} "
              f"| {r['unknown']} | {r['cold']:.1f} | {r['warm']:.0f} | {r['train_s']:.0f} |")


if __name__ == "__main__":
    main()
