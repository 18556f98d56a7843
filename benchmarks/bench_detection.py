"""Detector benchmark: how often each detector finds a face and both eyes, and how long it takes.

Runs over the labelled datasets in ../shared/datasets (every split) and prints a markdown
table for BENCHMARKS.md. Timing covers ``Detector.detect`` only (decoding excluded); each
detector is built and warmed up on one photo first, so model loading is not counted.

    python benchmarks/bench_detection.py                       # haar, mtcnn, dlib-hog on five_celebrity
    python benchmarks/bench_detection.py --detectors dlib-cnn --limit 20
    python benchmarks/bench_detection.py --glint --orl
    python benchmarks/bench_detection.py --detectors dlib-cnn --set dlib-cnn:upsample=1 --limit 20
"""

from __future__ import annotations

import argparse
import ast
import os
import platform
import random
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from core.images import ImageError, is_image_name, load_image  # noqa: E402
from core.pipeline.detection import DETECTORS

SPLITS = ("train", "validation", "val", "test")


@dataclass
class Result:
    detector: str
    dataset: str
    photos: int
    unreadable: int
    with_face: int
    with_eyes: int
    several: int
    times_ms: list[float]

    def row(self) -> str:
        def share(count: int) -> str:
            return f"{100 * count / self.photos:.0f}%" if self.photos else "–"

        mean = statistics.fmean(self.times_ms) if self.times_ms else float("nan")
        median = statistics.median(self.times_ms) if self.times_ms else float("nan")
        return (f"| {self.detector} | {self.dataset} | {self.photos} | {share(self.with_face)} | {share(self.with_eyes)} "
                f"| {share(self.several)} | {mean:.0f} | {median:.0f} | {self.unreadable} |")


def dataset_photos(folder: Path, limit: int | None, seed: int) -> list[Path]:
    """Every photo in the dataset's split folders, or a reproducible random sample of ``limit`` of them."""
    photos = sorted(path for split in SPLITS if (folder / split).is_dir()
                    for path in (folder / split).rglob("*") if path.is_file() and is_image_name(path.name))
    if not photos:
        raise SystemExit(f"error: no photos under {folder} (expected {', '.join(SPLITS)} sub-folders).")
    if limit is not None and limit < len(photos):
        photos = sorted(random.Random(seed).sample(photos, limit))
    return photos


def parse_settings(values: list[str]) -> dict[str, dict[str, object]]:
    """``["dlib-cnn:upsample=1", ...]`` → ``{"dlib-cnn": {"upsample": 1}}`` (values as Python literals, else text)."""
    settings: dict[str, dict[str, object]] = {}
    for value in values:
        name, sep, assignment = value.partition(":")
        key, equals, raw = assignment.partition("=")
        if not (sep and equals and name and key):
            raise SystemExit(f"error: --set expects DETECTOR:KEY=VALUE, got '{value}'.")
        try:
            parsed: object = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            parsed = raw
        settings.setdefault(name, {})[key] = parsed
    return settings


def run(detector_name: str, settings: dict[str, object], dataset: str, photos: list[Path]) -> Result:
    """Detect on every photo, counting faces, eye pairs (on the largest face) and time."""
    detector = DETECTORS.get(detector_name, **settings)
    label = detector_name + (f" ({', '.join(f'{k}={v}' for k, v in settings.items())})" if settings else "")
    result = Result(label, dataset, 0, 0, 0, 0, 0, [])
    warmed = False
    for index, path in enumerate(photos, 1):
        try:
            image = load_image(path)
        except ImageError as exc:
            print(f"  unreadable, skipped: {path}: {exc}", file=sys.stderr)
            result.unreadable += 1
            continue
        if not warmed:
            detector.detect(image)  # first call traces / allocates; not a fair timing
            warmed = True
        start = time.perf_counter()
        faces = detector.detect(image)
        result.times_ms.append(1000 * (time.perf_counter() - start))
        result.photos += 1
        result.with_face += bool(faces)
        result.with_eyes += bool(faces) and faces[0].has_eyes
        result.several += len(faces) > 1
        if index % 25 == 0:
            print(f"  {detector_name} {dataset}: {index}/{len(photos)}", file=sys.stderr)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--detectors", default="haar,mtcnn,dlib-hog",
                        help=f"comma-separated names (known: {', '.join(DETECTORS.entries())}); default %(default)s")
    parser.add_argument("--datasets-root", type=Path, default=ROOT.parent / "shared" / "datasets",
                        help="folder holding the shared datasets (default %(default)s)")
    parser.add_argument("--glint", action="store_true", help="also run on glint360k_celebrity_sample (112×112 crops)")
    parser.add_argument("--orl", action="store_true", help="also run on orl_att_faces (92×112 greyscale)")
    parser.add_argument("--limit", type=int, default=None, help="random sample of at most this many photos per dataset")
    parser.add_argument("--set", action="append", default=[], metavar="DETECTOR:KEY=VALUE",
                        help="a detector setting, e.g. dlib-cnn:upsample=1 or mtcnn:min_confidence=0.8 (repeatable)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the --limit sample (default %(default)s)")
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be at least 1")

    names = [name.strip() for name in args.detectors.split(",") if name.strip()]
    settings = parse_settings(args.set)
    try:
        for name in [*names, *settings]:
            DETECTORS.entry(name)  # unknown names fail here, before any work
    except ValueError as exc:
        parser.error(str(exc))
    datasets = ["five_celebrity_faces"] + ["glint360k_celebrity_sample"] * args.glint + ["orl_att_faces"] * args.orl
    samples = {name: dataset_photos(args.datasets_root / name, args.limit, args.seed) for name in datasets}

    results = []
    for detector_name in names:
        for dataset, photos in samples.items():
            print(f"{detector_name} on {dataset} ({len(photos)} photos)…", file=sys.stderr)
            try:
                results.append(run(detector_name, settings.get(detector_name, {}), dataset, photos))
            except (TypeError, ValueError, RuntimeError) as exc:  # bad --set values, detector unavailable
                raise SystemExit(f"error: {detector_name}: {exc}") from None

    print(f"Detection on {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
          f"Python {platform.python_version()}" + (f", random sample of {args.limit} per dataset" if args.limit else ""))
    print()
    print("| detector | dataset | photos | ≥1 face | eyes (largest face) | ≥2 faces | mean ms/photo | median ms | unreadable |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for result in results:
        print(result.row())
    return 0


if __name__ == "__main__":
    sys.exit(main())
