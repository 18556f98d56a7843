"""``python -m core predict RUN PHOTOS``: name every face in a dataset's test split or a folder of photos."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from core.cli._pipeline import progress_printer
from core.files import write_bytes_atomic

HELP = "name every face in the test split of a dataset (or a folder of photos) with a trained run"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="run id (see the Train page or core/runs), or 'active'")
    parser.add_argument("photos", help="a dataset (folder or FaceLab dataset name; its test/ split is used) "
                                       "or a folder of photos")
    parser.add_argument("--out", default=None, help="write annotated copies of the photos into this folder")
    parser.add_argument("--min-confidence", type=float, default=None, help="reject faces below this probability")
    parser.add_argument("--max-distance", type=float, default=None,
                        help="reject faces farther than this cosine distance from the person's training faces")


def run(args: argparse.Namespace) -> dict[str, Any]:
    from core.compare.unknown import UnknownRule
    from core.data.layout import resolve
    from core.images import encode_jpeg, load_image
    from core.runs import active_run
    from core.services.predict import confusion_table, photo_sources, predictor_for_run, summarize

    root = resolve(args.photos)  # the photos are checked before the run's models load
    paths, truths = photo_sources(root)
    run_id = active_run() if args.run == "active" else args.run
    if not run_id:
        raise ValueError("no active run; train one first or name a run id.")
    predictor = predictor_for_run(run_id)
    if args.min_confidence is not None or args.max_distance is not None:
        base = predictor.rule
        predictor.rule = UnknownRule(
            base.min_confidence if args.min_confidence is None else args.min_confidence,
            base.max_distance if args.max_distance is None else args.max_distance)
    photos = predictor.predict(paths, truths, progress=progress_printer("predicting"), root=root)
    if args.out:
        out_dir = Path(args.out)
        out_dir.mkdir(parents=True, exist_ok=True)
        written: set[str] = set()
        for path, photo in zip(paths, photos):
            if photo.error is None:
                name = _unique(f"{path.parent.name}__{path.stem}", written)
                write_bytes_atomic(out_dir / f"{name}.jpg", encode_jpeg(predictor.annotate(load_image(path), photo)))
    summary = summarize(photos, predictor.run.labels)
    acc = summary.accuracy
    result: dict[str, Any] = {
        "run": run_id, "images": [p.to_dict() for p in photos], "accuracy": acc,
        "judged": summary.judged, "correct": summary.correct, "strangers": summary.strangers,
        "stranger_photos": summary.stranger_photos, "rejected": summary.rejected,
        "rejection_rate": summary.rejection_rate, "false_accept_rate": summary.false_accept_rate,
        "no_face": summary.no_face, "no_face_photos": summary.no_face_photos,
        "faces": summary.faces, "unknown_faces": summary.unknown_faces,
        "rule": {"min_confidence": predictor.rule.min_confidence, "max_distance": predictor.rule.max_distance},
    }
    lines = [f"{summary.photos} photos, {summary.faces} faces, {summary.unknown_faces} unknown"]
    for photo in photos:
        mark = {True: "ok ", False: "BAD", None: "   "}[photo.correct]
        faces = ", ".join(f.text for f in photo.faces) or (photo.error or "no face")
        verdict = f" · {photo.verdict}" if photo.verdict else ""
        lines.append(f"  {mark} {photo.name}: {faces}{verdict}" + (f" ({photo.note})" if photo.note else ""))
    if summary.stranger_photos:
        lines.append(f"strangers (people the run does not know): {summary.rejected}/{summary.stranger_photos} "
                     f"correctly rejected ({summary.rejection_rate:.1%}), false-accept rate "
                     f"{summary.false_accept_rate:.1%}")
    if acc is not None:
        rows, table = confusion_table(photos, predictor.run.labels)
        result["confusion"] = {"rows": rows, "columns": [*predictor.run.labels, "unknown", "no face"], "counts": table}
        lines.append(f"accuracy {acc:.1%} of {summary.judged} labelled photos with a face of people the run knows; "
                     f"{summary.no_face} without a face")
        lines.append("confusion (rows: true; columns: " + ", ".join(result["confusion"]["columns"]) + ")")
        lines += [f"  {row:<20} " + " ".join(f"{n:>3}" for n in counts) for row, counts in zip(rows, table)]
    result["text"] = "\n".join(lines)
    return result


def _unique(stem: str, taken: set[str]) -> str:
    """``stem``, or ``stem-2``, ``stem-3``… so photos differing only by extension never overwrite each other."""
    name, n = stem, 1
    while name in taken:
        n += 1
        name = f"{stem}-{n}"
    taken.add(name)
    return name

