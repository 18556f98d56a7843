"""Verification benchmark: AUC and EER of the offline pipeline (MTCNN + dlib ResNet) and its variants,
plus the warm end-to-end time to verify two 640×480 photos.

Pairs: every photo of every split of a dataset together (glint360k_celebrity_sample: 458
photos of 23 people), all genuine pairs and a deterministic sample of impostor pairs
(``core.compare.calibration.pairs``); AUC and EER on the euclidean distance, the one dlib
documents. Photos where the detector finds no face are counted and left out of the pairs.
Each photo is detected once per detection variant; each backbone variant then aligns and
embeds the same faces, so the variants are compared on identical inputs.

Variants (each one a row):
  plain        largest face → dlib 5-point chip → descriptor (the reference pipeline)
  flip         the descriptor averaged with that of the mirrored chip (DlibResNet flip_average)
  jitter5      dlib's own test-time augmentation: 5 jittered copies (DlibResNet num_jitters=5)
  flip+pad     flip, with each photo padded by PAD of its size before detection, so tight crops
               (glint's 112×112) show the detector some margin around the face

    python benchmarks/bench_verification.py                         # glint + deepface, all variants
    python benchmarks/bench_verification.py --datasets glint360k_celebrity_sample --variants plain flip
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("FACELAB_HOME", tempfile.mkdtemp(prefix="facelab-bench-"))  # never touch a real home

from core.compare.calibration import calibrate
from core.data.layout import scan
from core.images import load_image  # noqa: E402
from core.pipeline.backbones import BACKBONES
from core.pipeline.detection import DETECTORS
from core.pipeline.detection.base import Face

SHARED = Path(os.environ.get("FACELAB_SHARED_DATASETS", ROOT.parent / "shared" / "datasets"))
PAD = 0.25
VARIANTS: dict[str, tuple[dict, bool]] = {  # name → (DlibResNet settings, pad before detection)
    "plain": ({"flip_average": False}, False),
    "flip": ({"flip_average": True}, False),
    "jitter5": ({"num_jitters": 5}, False),
    "flip+pad": ({"flip_average": True}, True),
}


@dataclass
class Detected:
    """The photos of a dataset with the largest face each (None where none was found)."""

    images: list[np.ndarray]
    labels: list[str]
    faces: list[Face | None]
    seconds: float


def pad(image: np.ndarray) -> np.ndarray:
    """The image with a black border of PAD × its size on every side."""
    height, width = image.shape[:2]
    dy, dx = round(height * PAD), round(width * PAD)
    return np.pad(image, ((dy, dy), (dx, dx), (0, 0)))


def detect(root: Path, detector, padded: bool, limit: int | None) -> Detected:
    records = [r for r in scan(root).images if r.person is not None][:limit]
    images = [load_image(r.path) for r in records]
    if padded:
        images = [pad(image) for image in images]
    start = time.perf_counter()
    faces = [next(iter(detector.detect(image)), None) for image in images]
    return Detected(images, [r.person for r in records], faces, time.perf_counter() - start)


def evaluate(found: Detected, backbone) -> dict[str, float]:
    keep = [i for i, face in enumerate(found.faces) if face is not None]
    start = time.perf_counter()
    crops = np.stack([backbone.align(found.images[i], found.faces[i]).crop for i in keep])
    embeddings = backbone.embed(crops)
    seconds = time.perf_counter() - start
    result = calibrate(embeddings, [found.labels[i] for i in keep], metric="euclidean")
    return {"photos": len(found.faces), "missed": len(found.faces) - len(keep), "genuine": result.n_genuine,
            "impostor": result.n_impostor, "auc": result.auc["euclidean"], "eer": result.eer["euclidean"],
            "auc_cos": result.auc["cosine"], "eer_cos": result.eer["cosine"],
            "threshold": result.thresholds["euclidean"], "ms_per_face": 1000 * seconds / max(1, len(keep)),
            "norm": float(np.median(np.linalg.norm(embeddings, axis=1)))}


def accuracy_table(datasets: list[str], variants: list[str], detector_name: str, limit: int | None) -> None:
    detector = DETECTORS.get(detector_name)
    print(f"\n### Verification accuracy ({detector_name} + dlib-resnet, all splits, euclidean)\n")
    print("| dataset | variant | photos | no face | genuine | impostor | AUC | EER | EER threshold | "
          "AUC (cos) | EER (cos) | align+embed ms/face | median ‖e‖ |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in datasets:
        root = SHARED / name
        if not root.is_dir():
            print(f"| {name} | (absent at {root}) |")
            continue
        detections: dict[bool, Detected] = {}
        for variant in variants:
            settings, padded = VARIANTS[variant]
            if padded not in detections:
                detections[padded] = detect(root, detector, padded, limit)
                found = detections[padded]
                print(f"<!-- {name} padded={padded}: detection {1000 * found.seconds / len(found.faces):.0f} ms/photo -->",
                      flush=True)
            row = evaluate(detections[padded], BACKBONES.get("dlib-resnet", **settings))
            print(f"| {name} | {variant} | {row['photos']} | {row['missed']} | {row['genuine']} | {row['impostor']} | "
                  f"{row['auc']:.4f} | {row['eer']:.2%} | {row['threshold']:.3f} | {row['auc_cos']:.4f} | "
                  f"{row['eer_cos']:.2%} | {row['ms_per_face']:.0f} | {row['norm']:.2f} |", flush=True)


def photo_640x480(path: Path) -> bytes:
    """A JPEG of the photo cut to 4:3 around its centre and resized to 640×480 (a webcam-sized frame)."""
    from PIL import Image

    image = Image.fromarray(load_image(path))
    width, height = image.size
    side_w, side_h = min(width, height * 4 // 3), min(height, width * 3 // 4)
    left, top = (width - side_w) // 2, (height - side_h) // 2
    frame = image.crop((left, top, left + side_w, top + side_h)).resize((640, 480))
    buffer = io.BytesIO()
    frame.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def timing(detector_name: str, backbone_settings: dict, repeats: int) -> None:
    from core.pipeline.embeddings import Pipeline
    from core.services import verify as service

    folder = SHARED / "deepface_unit_identities" / "train" / "person_01"
    if not folder.is_dir():
        print(f"\n(timing skipped: {folder} absent)")
        return
    photos = [photo_640x480(path) for path in sorted(folder.iterdir())[:2]]
    start = time.perf_counter()
    pipeline = Pipeline(DETECTORS.get(detector_name), BACKBONES.get("dlib-resnet", **backbone_settings))
    load = time.perf_counter() - start

    def once(with_steps: bool) -> float:
        start = time.perf_counter()
        first, second = service.analyse_photos(pipeline, [(data, f"photo{i}") for i, data in enumerate(photos)], with_steps)
        service.compare(pipeline, first.face(0), second.face(0))
        return time.perf_counter() - start

    once(False)  # warm-up: first TensorFlow calls trace their graphs
    print(f"\n### Warm verification of two 640×480 photos ({detector_name} + dlib-resnet {backbone_settings or ''})\n")
    print(f"models loaded in {load:.1f} s; median of {repeats} runs, decode → detect → align → embed → verdict\n")
    print("| what | median s | min s |")
    print("|---|---:|---:|")
    for label, with_steps in (("CLI (no step pictures)", False), ("Verify page (with step pictures)", True)):
        runs = [once(with_steps) for _ in range(repeats)]
        print(f"| {label} | {statistics.median(runs):.3f} | {min(runs):.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["glint360k_celebrity_sample", "deepface_unit_identities"])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--detector", default="mtcnn")
    parser.add_argument("--limit", type=int, default=None, help="at most this many photos per dataset")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--timing-variant", default="flip", choices=list(VARIANTS))
    parser.add_argument("--no-accuracy", action="store_true")
    args = parser.parse_args()
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    if not args.no_accuracy:
        accuracy_table(args.datasets, args.variants, args.detector, args.limit)
    timing(args.detector, VARIANTS[args.timing_variant][0], args.repeats)


if __name__ == "__main__":
    main()
