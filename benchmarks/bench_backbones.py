"""Backbone benchmark: embeddings per second at batch 1 and batch 32 against a naive one-at-a-time loop.

The naive loop is the classic notebook's: ``model.predict`` on one expanded image at a time
for VGG-Face, one in-process ``compute_face_descriptor`` call per chip for dlib (FaceLab's dlib
backbone describes chips in worker processes, one per core, mirror image included). VGG-Face runs with
random weights (the speed does not depend on them), so no download is needed. Prints a
markdown table and the peak resident memory of the process with VGG-Face loaded.

    python benchmarks/bench_backbones.py                 # 32 crops per measurement, best of 2 rounds
    python benchmarks/bench_backbones.py --images 64 --backbones vggface16
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from core.pipeline.backbones import BACKBONES, Backbone

BATCH = 32


def peak_rss_gb() -> float:
    """Peak resident memory of this process so far (ru_maxrss is in KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024**3 if sys.platform == "darwin" else peak / 1024**2


def rates(runs: list[Callable[[np.ndarray], object]], crops: np.ndarray, repeats: int) -> list[float]:
    """Best embeddings per second of each run over ``crops``, the runs interleaved ``repeats`` times.

    Best-of and interleaving keep other processes' load on a shared machine from favouring one run.
    """
    for run in runs:
        run(crops[:1])  # warm-up: graph tracing, lazy allocations
    best = [0.0] * len(runs)
    for _ in range(repeats):
        for index, run in enumerate(runs):
            start = time.perf_counter()
            run(crops)
            best[index] = max(best[index], len(crops) / (time.perf_counter() - start))
    return best


def one_at_a_time(embed: Callable[[np.ndarray], object]) -> Callable[[np.ndarray], object]:
    return lambda crops: [embed(crops[i:i + 1]) for i in range(len(crops))]


def batched(embed: Callable[[np.ndarray], object]) -> Callable[[np.ndarray], object]:
    return lambda crops: [embed(crops[i:i + BATCH]) for i in range(0, len(crops), BATCH)]


def naive_loop(backbone: Backbone) -> Callable[[np.ndarray], object]:
    """The tutorial way: the framework's single-image entry point, once per photo."""
    if backbone.name == "vggface16":
        import keras

        embedder = keras.Model(backbone.model.input, backbone.model.get_layer("fc8").output)
        return lambda crops: [embedder.predict(np.expand_dims(backbone.preprocess(crop), 0), verbose=0)
                              for crop in crops]
    import dlib

    from core.pipeline.backbones.dlib_resnet import model_path

    model = dlib.face_recognition_model_v1(str(model_path()))  # in this process, as a notebook would
    return lambda crops: [model.compute_face_descriptor(np.ascontiguousarray(crop)) for crop in crops]


def measure(name: str, images: int, repeats: int) -> tuple[str, float]:
    settings = {"weights": "random"} if name == "vggface16" else {}
    start = time.perf_counter()
    backbone = BACKBONES.entry(name).factory(**settings)
    load_s = time.perf_counter() - start
    crops = np.random.default_rng(0).integers(0, 256, (images, backbone.input_size, backbone.input_size, 3),
                                              dtype=np.uint8)
    naive, single, batch = rates([naive_loop(backbone), one_at_a_time(backbone.embed), batched(backbone.embed)],
                                 crops, repeats)
    row = (f"| {name} | {images} | {load_s:.1f} | {naive:.2f} | {single:.2f} | {batch:.2f} | {batch / naive:.2f}× "
           f"| {peak_rss_gb():.2f} |")
    return row, peak_rss_gb()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=BATCH, help="crops per measurement (default 32)")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved rounds; the best of each is kept")
    parser.add_argument("--backbones", nargs="+", default=["vggface16", "dlib-resnet"])
    args = parser.parse_args()

    import tensorflow as tf

    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"TensorFlow {tf.__version__}, GPU: {bool(tf.config.list_physical_devices('GPU'))}")
    print("| backbone | crops | load s | naive loop emb/s | batch 1 emb/s | batch 32 emb/s | batch 32 vs naive "
          "| peak RSS GB (process so far) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name in args.backbones:
        row, peak = measure(name, args.images, args.repeats)
        print(row, flush=True)
        if name == "vggface16":
            print(f"<!-- VGG-Face peak RSS {peak:.2f} GB (target ≤ 2.5 GB) -->", flush=True)


if __name__ == "__main__":
    main()
