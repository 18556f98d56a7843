"""Whole-process speed of FaceLab's pipeline against the loop a student would write instead (issue 14).

Every job is a fresh process, timed from start to exit, and the rounds interleave the contenders so that the
machine's load falls on all of them alike; the table gives the median of the rounds and each FaceLab time as a
speed ratio against its peer (above 1: FaceLab is faster).

- cold embed: ``python -m core embed DATASET --detector D`` with an empty FaceLab home (nothing cached), in this
  checkout and, with ``--baseline PATH``, in another one (e.g. a worktree of the previous commit);
- the peer for dlib HOG: face_recognition's loop (``face_locations`` with HOG, then ``face_encodings``, one
  process), when the package is installed (``pip install --no-deps face_recognition``: it only wraps dlib);
- cached embed: the same command again on the same home (everything cached);
- cold verify: ``python -m core verify A B`` against face_recognition doing the same in a new process;
- warm verify: one process verifies the same two photos after a first verification and 5 s of background
  loading (the models a server has loaded).

Each "cold" home is empty, so a process also builds what FaceLab derives once from the weight files (the ONNX
graphs; an older checkout's Keras twin); ``--models-built`` gives each cold home a copy of the weights folder
that one verification in each checkout left, so only the photos are new, as on any run after the first.

    python benchmarks/bench_pipeline_speed.py --baseline /tmp/base --rounds 2
    python benchmarks/bench_pipeline_speed.py --busy 1   # the same with one core kept busy by a spinning process
    python benchmarks/bench_pipeline_speed.py --models-built   # cold photos, models derived already
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FACELAB_SHARED_DATASETS", ROOT.parent / "shared" / "datasets"))
PHOTOS = (".jpg", ".jpeg", ".png")

PEER_EMBED = """
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
import face_recognition
for path in sorted(p for p in Path(sys.argv[1]).rglob("*") if p.suffix.lower() in {photos!r}):
    image = face_recognition.load_image_file(path)
    face_recognition.face_encodings(image, face_recognition.face_locations(image, model="hog"))
"""
PEER_VERIFY = """
import sys, time
import face_recognition
def verify():
    a, b = (face_recognition.face_encodings(face_recognition.load_image_file(p))[0] for p in sys.argv[1:3])
    return face_recognition.face_distance([a], b)[0] < 0.6
"""
FACELAB_VERIFY = """
import sys, time
from core import api
def verify():
    return api.verify(sys.argv[1], sys.argv[2])
"""
ONCE = "print(verify())\n"  # a cold process: one verification
WARM = """
verify()
time.sleep(5)  # what the first verification started loading in the background finishes (FaceLab: the Keras twin)
times = []
for _ in range(5):
    start = time.perf_counter(); verify(); times.append(time.perf_counter() - start)
print(sorted(times)[2])
"""  # the median of 5 verifications after a first one (and 5 s) loaded the models

def timed(command: list[str], cwd: Path, home: Path) -> tuple[float, str]:
    """Wall seconds of one process, and its standard output (it must succeed)."""
    env = {**os.environ, "FACELAB_HOME": str(home), "TF_CPP_MIN_LOG_LEVEL": "3"}
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=3600)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    return seconds, done.stdout


@contextlib.contextmanager
def fresh_home(weights: Path | None) -> Iterator[Path]:
    """An empty FaceLab home, holding a copy of ``weights`` as its weights folder when given."""
    with tempfile.TemporaryDirectory() as home:
        if weights is not None:
            shutil.copytree(weights, Path(home) / "weights")
        yield Path(home)


def has_face_recognition() -> bool:
    return subprocess.run([sys.executable, "-c", "import face_recognition"], capture_output=True).returncode == 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="*", default=["five_celebrity_faces", "glint360k_celebrity_sample"])
    parser.add_argument("--detectors", nargs="+", default=["mtcnn", "dlib-hog"])
    parser.add_argument("--baseline", type=Path, help="another FaceLab checkout to time beside this one")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--busy", type=int, default=0, metavar="N",
                        help="keep N cores busy with spinning processes during the runs (a busy machine)")
    parser.add_argument("--models-built", action="store_true",
                        help="cold homes start with the weights folder a first verification left (see above)")
    args = parser.parse_args()
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    try:
        run(args)
    finally:
        for spinner in spinners:
            spinner.kill()


def run(args: argparse.Namespace) -> None:
    peer = has_face_recognition()
    checkouts = {"now": ROOT} | ({"baseline": args.baseline.resolve()} if args.baseline else {})
    python = sys.executable
    results: dict[str, list[float]] = {}

    def add(name: str, seconds: float) -> None:
        results.setdefault(name, []).append(seconds)
        print(f"  {name}: {seconds:.2f} s", file=sys.stderr, flush=True)

    five = SHARED / "five_celebrity_faces"
    pair = [str(sorted((five / "train" / "madonna").iterdir())[i]) for i in (0, 1)]
    built = contextlib.ExitStack()
    weights: dict[str, Path | None] = dict.fromkeys(checkouts)
    if args.models_built:
        for label, checkout in checkouts.items():
            home = built.enter_context(fresh_home(None))
            timed([python, "-m", "core", "verify", *pair], checkout, home)
            weights[label] = home / "weights"
    with built:
        measure(args, checkouts, weights, pair, peer, add)
    report(results, checkouts)


def measure(args: argparse.Namespace, checkouts: dict[str, Path], weights: dict[str, Path | None], pair: list[str],
            peer: bool, add: Callable[[str, float], None]) -> None:
    python = sys.executable
    for round_ in range(1, args.rounds + 1):
        print(f"round {round_}", file=sys.stderr)
        for dataset in args.datasets:
            folder = SHARED / dataset
            for detector in args.detectors:
                for label, checkout in checkouts.items():
                    with fresh_home(weights[label]) as home:
                        command = [python, "-m", "core", "embed", str(folder), "--detector", detector]
                        add(f"{dataset}|{detector}|cold|{label}", timed(command, checkout, home)[0])
                        add(f"{dataset}|{detector}|cached|{label}", timed(command, checkout, home)[0])
            if peer:
                with tempfile.TemporaryDirectory() as home:
                    add(f"{dataset}|dlib-hog|cold|face_recognition",
                        timed([python, "-c", PEER_EMBED.format(photos=PHOTOS), str(folder)], ROOT, Path(home))[0])
        for label, checkout in checkouts.items():
            with fresh_home(weights[label]) as home:
                add(f"verify|cold|{label}", timed([python, "-m", "core", "verify", *pair], checkout, home)[0])
                add(f"verify|warm|{label}", float(timed([python, "-c", FACELAB_VERIFY + WARM, *pair], checkout, home)[1]))
        if peer:
            with tempfile.TemporaryDirectory() as home:
                add("verify|cold|face_recognition", timed([python, "-c", PEER_VERIFY + ONCE, *pair], ROOT, Path(home))[0])
                add("verify|warm|face_recognition", float(timed([python, "-c", PEER_VERIFY + WARM, *pair], ROOT, Path(home))[1]))


def report(results: dict[str, list[float]], checkouts: dict[str, Path]) -> None:
    """The markdown table of medians and speed ratios."""
    median = {name: statistics.median(values) for name, values in results.items()}
    print(f"| job | {' | '.join(checkouts)} | face_recognition | now vs baseline | now vs face_recognition |")
    print("|---|" + "---:|" * (len(checkouts) + 3))
    jobs = sorted({name.rsplit("|", 1)[0] for name in median if name.endswith("|now")})
    for job in jobs:
        cells = [f"{median[f'{job}|{label}']:.2f} s" if f"{job}|{label}" in median else "" for label in checkouts]
        dataset, *_ = job.split("|")
        peer_key = f"{job}|face_recognition" if dataset == "verify" else f"{dataset}|dlib-hog|cold|face_recognition"
        peer_time = median.get(peer_key) if "cached" not in job else None
        now = median[f"{job}|now"]
        versus_base = f"{median[f'{job}|baseline'] / now:.2f}×" if f"{job}|baseline" in median else ""
        versus_peer = f"{peer_time / now:.2f}×" if peer_time else ""
        print(f"| {job.replace('|', ' · ')} | {' | '.join(cells)} | {f'{peer_time:.2f} s' if peer_time else ''} | "
              f"{versus_base} | {versus_peer} |")


if __name__ == "__main__":
    main()
