"""Which face of a photo to use: the face-choice rules (``core.pipeline.face_choice``) compared per detector.

For each dataset × detector, every photo is detected once (all faces kept, and kept in ``--detections``, a
folder of JSON files, so a rerun after a change of the rules detects nothing); each rule then picks its
face 0 from the same detections, and verification AUC/EER (euclidean, dlib-resnet, every genuine pair and
a deterministic impostor sample) is measured with ``bench_verification.evaluate``. The table also counts
photos with several faces and how often the rules pick different faces. Prints a markdown table.

    python benchmarks/bench_face_choice.py
    python benchmarks/bench_face_choice.py --datasets five_celebrity_faces --detectors haar --limit 50
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_verification import SHARED, Detected, evaluate  # noqa: E402 (sets FACELAB_HOME to a temporary home)

from core.data.layout import scan  # noqa: E402
from core.images import load_image  # noqa: E402
from core.pipeline.backbones import BACKBONES  # noqa: E402
from core.pipeline.detection import DETECTORS  # noqa: E402
from core.pipeline.detection.base import Face  # noqa: E402
from core.pipeline.face_choice import DEFAULT_FACE_CHOICE, RULES, order_faces  # noqa: E402


def detect_all(roots: list[Path], detector_name: str, limit: int | None,
               store: Path) -> tuple[Detected, list[list[Face]], list[str]]:
    """Every labelled photo of the datasets with all its faces (labels prefixed by dataset: people never merge),
    and the photos' names. Detections are read from ``store`` when an earlier run left them there."""
    records = [(root, r) for root in roots for r in [r for r in scan(root).images if r.person is not None][:limit]]
    names = [f"{root.name}/{record.path.relative_to(root)}" for root, record in records]
    saved = store / f"{detector_name}-{hashlib.sha256(json.dumps(names).encode()).hexdigest()[:16]}.json"
    detector = None if saved.exists() else DETECTORS.get(detector_name)
    images = [load_image(record.path) for _, record in records]
    start = time.perf_counter()
    if detector is None:
        stored = json.loads(saved.read_text())
        faces, seconds = [[Face.from_dict(f) for f in photo] for photo in stored["faces"]], stored["seconds"]
    else:
        faces = [detector.detect(image) for image in images]
        seconds = time.perf_counter() - start
        saved.write_text(json.dumps({"faces": [[f.to_dict() for f in photo] for photo in faces], "seconds": seconds}))
    labels = [f"{root.name}/{record.person}" for root, record in records]
    return Detected(images, labels, [None] * len(images), seconds), faces, names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+",
                        default=["five_celebrity_faces", "glint360k_celebrity_sample", "deepface_unit_identities"])
    parser.add_argument("--detectors", nargs="+", default=["mtcnn", "haar", "dlib-hog"])
    parser.add_argument("--backbone", default="dlib-resnet")
    parser.add_argument("--limit", type=int, default=None, help="at most this many photos per dataset")
    parser.add_argument("--detections", type=Path, default=Path(tempfile.gettempdir()) / "facelab-bench-face-choice",
                        help="folder that keeps each detector's raw detections between runs")
    args = parser.parse_args()
    roots = [SHARED / name for name in args.datasets if (SHARED / name).is_dir()]
    args.detections.mkdir(parents=True, exist_ok=True)
    backbone = BACKBONES.get(args.backbone)
    print(f"datasets pooled: {', '.join(r.name for r in roots)}; backbone {args.backbone}; euclidean AUC/EER; "
          f"default rule: {DEFAULT_FACE_CHOICE}\n")
    print("| detector | photos | no face | several faces | rules disagree | rule | AUC | EER | detect ms/photo |")
    print("|---|---:|---:|---:|---:|---|---:|---:|---:|")
    for detector_name in args.detectors:
        found, all_faces, names = detect_all(roots, detector_name, args.limit, args.detections)
        chosen = {rule: [next(iter(order_faces(faces, image.shape[1], image.shape[0], rule)), None)
                         for faces, image in zip(all_faces, found.images)] for rule in RULES}
        several = sum(len(faces) > 1 for faces in all_faces)
        first, *others = chosen.values()
        differing = [i for i in range(len(first)) if any(other[i] != first[i] for other in others)]
        disagree = len(differing)
        for i in differing:
            print(f"<!-- {detector_name} {names[i]} {found.images[i].shape[1]}×{found.images[i].shape[0]}: "
                  + "; ".join(f"{rule} {faces[i].box if faces[i] else None}" for rule, faces in chosen.items())
                  + f" of {[f.box for f in all_faces[i]]} -->", file=sys.stderr)
        for rule, faces in chosen.items():
            found.faces = faces
            row = evaluate(found, backbone)
            print(f"| {detector_name} | {row['photos']} | {row['missed']} | {several} | {disagree} | {rule} | "
                  f"{row['auc']:.4f} | {row['eer']:.2%} | {1000 * found.seconds / row['photos']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
