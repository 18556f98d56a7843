"""No quadratic step a user can reach (issue 14): the Verify page's t-SNE map and the audit's near-duplicate search.

Map: realistic embeddings (128-d, 20 photos per person; photos of one person 0.45 apart on average, of two
people 0.72, like dlib descriptors) mapped by ``project_2d(..., "tsne")`` as shipped, by openTSNE alone with one thread
and with all cores, and by scikit-learn's Barnes–Hut TSNE (all cores, the same 750 iterations). Each run is a
fresh process stopped after ``--cap`` seconds. The old hand-written exact t-SNE is gone; its figures are quoted
from the issue. "1-NN" is the share of points whose nearest map neighbour is the same person (1.0 in 128-d).

Near duplicates: 256-bit hashes, 95% random and 5% copies of another at 0..12 flipped bits, searched for pairs
within NEAR_DUPLICATE_BITS by the old all-pairs search (kept as the tests' reference) and by the multi-index
search the audit uses now; both must return the same pairs. Then the candidates each way of cutting the hash
into chunks yields on the real photos of the shared datasets.

    python benchmarks/bench_scaling_quadratic.py
    python benchmarks/bench_scaling_quadratic.py --map-sizes 1600 3200 --hash-sizes 6400 --cap 120
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.compare.projection import project_2d  # noqa: E402
from core.data import audit  # noqa: E402
from tests.test_dataset import all_pairs_near, flipped  # noqa: E402

SHARED = Path(os.environ.get("FACELAB_SHARED_DATASETS", ROOT.parent / "shared" / "datasets"))
OLD_EXACT = {1600: "14 s", 3200: "98 s"}  # quoted from issue 14; it refused more than 5,000 points
MAPPERS = ("shipped", "opentsne-1", "opentsne-all", "sklearn")


def embeddings(count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``count`` 128-d float32 embeddings of count/20 people, and their labels."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % max(count // 20, 1)
    centres = rng.normal(0, 0.035, (labels.max() + 1, 128))
    return (centres[labels] + rng.normal(0, 0.028, (count, 128))).astype(np.float32), labels


def same_person_nearest(points: np.ndarray, labels: np.ndarray) -> float:
    """Share of points whose nearest other point has their label."""
    from sklearn.neighbors import NearestNeighbors

    nearest = NearestNeighbors(n_neighbors=2).fit(points).kneighbors(points, return_distance=False)[:, 1]
    return float(np.mean(labels[nearest] == labels))


def map_once(mapper: str, count: int) -> dict[str, float]:
    """Seconds (imports excluded) and 1-NN agreement of one map: run in a child process."""
    from openTSNE import TSNE as OpenTSNE
    from sklearn.manifold import TSNE as SklearnTSNE

    data, labels = embeddings(count)
    start = time.perf_counter()
    if mapper == "shipped":
        points = project_2d(data, "tsne", seed=0)
    elif mapper.startswith("opentsne"):
        jobs = 1 if mapper == "opentsne-1" else -1
        points = np.asarray(OpenTSNE(perplexity=30, early_exaggeration_iter=187, n_iter=563, random_state=0,
                                     n_jobs=jobs).fit(data.astype(np.float64)))
    else:
        points = SklearnTSNE(perplexity=30, max_iter=750, random_state=0, n_jobs=-1).fit_transform(data)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "nn": same_person_nearest(points, labels)}


def timed_map(mapper: str, count: int, cap: float) -> str:
    """``12.3 s (1-NN 1.00)``, or how long it ran before the cap stopped it."""
    try:
        result = subprocess.run([sys.executable, __file__, "--child", mapper, str(count)], capture_output=True,
                                text=True, timeout=cap, check=True)
    except subprocess.TimeoutExpired:
        return f"> {cap:.0f} s (stopped)"
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    return f"{figures['seconds']:.1f} s (1-NN {figures['nn']:.2f})"


def planted(count: int, seed: int = 0) -> np.ndarray:
    """``count`` 256-bit hashes: random, but every 20th a copy of an earlier one with 0..12 bits flipped."""
    rng = np.random.default_rng(seed)
    hashes = rng.integers(0, 256, (count, 32), dtype=np.uint8)
    for k, target in enumerate(range(20, count, 20)):
        hashes[target] = flipped(hashes[int(rng.integers(target))], k % 13, rng)
    return hashes


def candidates(hashes: np.ndarray, chunks: list[np.ndarray]) -> int:
    """Pairs that share at least one chunk's value, counted with repeats: the work of the exact check."""
    unpacked = np.unpackbits(hashes, axis=1)
    total = 0
    for chunk in chunks:
        counts = np.unique(np.packbits(unpacked[:, chunk], axis=1), axis=0, return_counts=True)[1]
        total += int((counts * (counts - 1) // 2).sum())
    return total


def real_hashes() -> np.ndarray:
    """The dHash of every photo of the shared datasets, as the audit computes it."""
    from core.images import load_thumbnail

    paths = sorted(p for p in SHARED.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png", ".pgm"})
    return np.array([np.frombuffer(bytes.fromhex(audit.dhash(load_thumbnail(p.read_bytes(), 64))), np.uint8)
                     for p in paths]).reshape(-1, 32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--map-sizes", type=int, nargs="*", default=[1600, 3200, 6400, 50_000])
    parser.add_argument("--mappers", nargs="*", choices=MAPPERS, default=list(MAPPERS))
    parser.add_argument("--hash-sizes", type=int, nargs="*", default=[6400, 51_200])
    parser.add_argument("--cap", type=float, default=600, help="seconds after which one map run is stopped")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(map_once(args.child[0], int(args.child[1]))))
        return

    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}\n")
    if args.map_sizes:
        print("| points | old exact t-SNE (issue) | " + " | ".join(args.mappers) + " |")
        print("|---:|---:|" + "---:|" * len(args.mappers))
        for count in args.map_sizes:
            cells = [timed_map(mapper, count, args.cap) for mapper in args.mappers]
            print(f"| {count:,} | {OLD_EXACT.get(count, 'refused')} | " + " | ".join(cells) + " |", flush=True)
        print()
    if args.hash_sizes:
        print("| hashes | near pairs | all pairs (old) | multi-index (now) | same pairs |")
        print("|---:|---:|---:|---:|---|")
        for count in args.hash_sizes:
            hashes = planted(count)
            start = time.perf_counter()
            new = audit._near_pairs(hashes, audit.NEAR_DUPLICATE_BITS)
            new_seconds = time.perf_counter() - start
            start = time.perf_counter()
            old = all_pairs_near(hashes, audit.NEAR_DUPLICATE_BITS)
            old_seconds = time.perf_counter() - start
            print(f"| {count:,} | {len(new):,} | {old_seconds:.2f} s | {new_seconds:.3f} s | {old == new} |", flush=True)
        print()
    if SHARED.is_dir():
        hashes = real_hashes()
        parts = audit.NEAR_DUPLICATE_BITS + 1
        runs = candidates(hashes, np.array_split(np.arange(256), parts))
        dealt = candidates(hashes, [np.arange(c, 256, parts) for c in range(parts)])
        print(f"{len(hashes):,} real photos' dHashes ({len(hashes) * (len(hashes) - 1) // 2:,} pairs): "
              f"{runs:,} candidates with chunks of consecutive bits, {dealt:,} with every {parts}th bit (used).")


if __name__ == "__main__":
    main()
