"""How each dataset job grows with the number of photos (issue 14's scaling table).

For N = 100, 400, 1,600, 6,400 a dataset is made of synthetic copies of the shared datasets' photos (each copy
cropped by 0–6 % on each side at random, mirrored half the time, saved as JPEG; the person is the source photo's,
70/15/15 % train/validation/test per person). Then, each timed in this process with an empty FaceLab home:

- scan: listing the folders and the audit with hashes (sha256 and dHash, near-duplicate search);
- embed: ``build_gallery`` (``embed_dataset`` over every split), cold: detector and backbone built before the
  clock starts;
- train: ``train_on_dataset`` with the default head on the now cached embeddings;
- search: 1:N search of 100 probes against the gallery of every photo;
- map: the embedding map of the gallery (t-SNE, as Verify draws it).

The exponent of each job is the slope of log(seconds) against log(N) by least squares: 1 is linear.

    python benchmarks/bench_scaling.py
    python benchmarks/bench_scaling.py --sizes 100 400 --detector haar
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SHARED = Path(os.environ.get("FACELAB_SHARED_DATASETS", ROOT.parent / "shared" / "datasets"))
SOURCES = ("five_celebrity_faces", "glint360k_celebrity_sample", "deepface_unit_identities")
JOBS = ("scan", "embed", "train", "search", "map")


def make_dataset(target: Path, count: int, seed: int = 0) -> None:
    """``count`` photos: copies of the shared datasets' labelled photos (in one shuffled order, so each N has the
    same mix), slightly cropped and mirrored at random."""
    from PIL import Image, ImageOps

    from core.data.layout import scan

    sources = [(f"{name}_{r.person}", r.path) for name in SOURCES if (SHARED / name).is_dir()
               for r in scan(SHARED / name).images if r.person is not None]
    if not sources:
        raise SystemExit(f"no shared dataset under {SHARED}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(sources))  # every N draws the same mix of small crops and large photos
    by_person: dict[str, list[int]] = {}
    for index in range(count):
        person, path = sources[order[index % len(sources)]]
        by_person.setdefault(person, []).append(index)
        with Image.open(path) as opened:
            image = ImageOps.exif_transpose(opened).convert("RGB")
        width, height = image.size
        left, top, right, bottom = (rng.uniform(0, 0.06, 4) * [width, height, width, height]).astype(int)
        image = image.crop((left, top, width - right, height - bottom))
        if rng.random() < 0.5:
            image = ImageOps.mirror(image)
        position = len(by_person[person]) - 1
        split = "train" if position % 20 < 14 else "validation" if position % 20 < 17 else "test"
        folder = target / split / person
        folder.mkdir(parents=True, exist_ok=True)
        image.save(folder / f"{index}.jpg", quality=90)


def measure(root: Path, detector: str, backbone: str) -> dict[str, float]:
    """Seconds of each job on one dataset (a fresh home, so embedding starts cold)."""
    from core.api import pipeline
    from core.data.audit import audit
    from core.data.layout import scan
    from core.services.gallery import build_gallery, embedding_map, search
    from core.services.train import train_on_dataset
    from core.training.config import TrainConfig

    seconds: dict[str, float] = {}
    chosen = pipeline(detector, backbone)
    chosen.detector.load()
    side = chosen.backbone.input_size  # the backbone's model too (dlib's twin is built on its first batch)
    chosen.backbone.embed(np.zeros((8, side, side, 3), np.uint8))

    start = time.perf_counter()
    audit(scan(root))
    seconds["scan"] = time.perf_counter() - start
    start = time.perf_counter()
    gallery = build_gallery(chosen, root)
    seconds["embed"] = time.perf_counter() - start
    start = time.perf_counter()
    train_on_dataset(root, chosen, TrainConfig())
    seconds["train"] = time.perf_counter() - start
    probes = gallery.embeddings[np.linspace(0, len(gallery.embeddings) - 1, 100).astype(int)]
    start = time.perf_counter()
    for probe in probes:
        search(gallery, probe, "euclidean")
    seconds["search"] = time.perf_counter() - start
    start = time.perf_counter()
    embedding_map(gallery, [], method="tsne")
    seconds["map"] = time.perf_counter() - start
    return seconds


def exponent(sizes: list[int], seconds: list[float]) -> float:
    """The slope of log(seconds) against log(N)."""
    return float(np.polyfit(np.log(sizes), np.log(np.maximum(seconds, 1e-4)), 1)[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 400, 1600, 6400])
    parser.add_argument("--detector", default="dlib-hog")
    parser.add_argument("--backbone", default="dlib-resnet")
    args = parser.parse_args()
    table: dict[int, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="facelab-scaling-") as work:
        for size in args.sizes:
            root = Path(work) / f"n{size}"
            make_dataset(root, size)
            os.environ["FACELAB_HOME"] = str(Path(work) / f"home{size}")
            table[size] = measure(root, args.detector, args.backbone)
            print(f"N={size}: " + ", ".join(f"{job} {table[size][job]:.2f} s" for job in JOBS), file=sys.stderr)
    print(f"{args.detector} + {args.backbone}; seconds per job\n")
    print("| job | " + " | ".join(f"N = {size:,}" for size in args.sizes) + " | exponent |")
    print("|---|" + "---:|" * (len(args.sizes) + 1))
    for job in JOBS:
        times = [table[size][job] for size in args.sizes]
        print(f"| {job} | " + " | ".join(f"{t:.2f}" for t in times) + f" | {exponent(args.sizes, times):.2f} |")


if __name__ == "__main__":
    main()
