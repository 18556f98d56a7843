"""``python -m core embed DATASET``: fill the embedding cache for every split and report faces found."""

from __future__ import annotations

import argparse
from typing import Any

from core.cli._pipeline import add_pipeline_arguments, build_pipeline, progress_printer

HELP = "detect, align and embed every photo of a dataset (results are cached)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", help="dataset folder (train/, validation/, test/) or a FaceLab dataset name")
    add_pipeline_arguments(parser)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from core.data.layout import resolve
    from core.pipeline.embeddings import Throughput, embed_dataset

    root = resolve(args.dataset)
    pipeline = build_pipeline(args)
    clock = Throughput()
    splits = embed_dataset(root, pipeline, progress=progress_printer("embedding"))
    photos = sum(s.photos for s in splits.values())
    per_split = {
        name: {"photos": s.photos, "with_face": len(s.paths), "no_face": len(s.no_face),
               "many_faces": len(s.many_faces), "errors": len(s.errors)}
        for name, s in splits.items()
    }
    result: dict[str, Any] = {
        "dataset": str(args.dataset),
        "detector": pipeline.detector.name,
        "backbone": pipeline.backbone.name,
        "align": pipeline.align,
        "crop": pipeline.crop,
        "face_choice": pipeline.face_choice,
        "photos": photos,
        "with_face": sum(v["with_face"] for v in per_split.values()),
        "no_face": sum(v["no_face"] for v in per_split.values()),
        "many_faces": sum(v["many_faces"] for v in per_split.values()),
        "errors": sum(v["errors"] for v in per_split.values()),
        "images_per_second": round(clock.rate(photos), 2),
        "splits": per_split,
        "no_face_photos": [p for s in splits.values() for p in s.no_face],
        "error_photos": {p: e for s in splits.values() for p, e in s.errors.items()},
    }
    lines = [f"{pipeline.detector.name} + {pipeline.backbone.name} (align={pipeline.align}, crop={pipeline.crop}) on {args.dataset}"]
    lines += [f"  {name:<11} {v['photos']:>5} photos  {v['with_face']:>5} with a face  {v['no_face']:>4} none  "
              f"{v['many_faces']:>4} many  {v['errors']:>3} unreadable" for name, v in per_split.items()]
    share = 100 * result["with_face"] / photos if photos else 0.0
    lines.append(f"  faces found in {share:.1f}% of {photos} photos, {result['images_per_second']} photos/s")
    lines += [f"  no face: {p}" for p in result["no_face_photos"]]
    result["text"] = "\n".join(lines)
    return result
