"""Options shared by the commands that run the face pipeline (detector, backbone, alignment)."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from core.pipeline.alignment import CROPS, DEFAULT_CROP
from core.pipeline.detection import DEFAULT_DETECTOR
from core.pipeline.face_choice import DEFAULT_FACE_CHOICE, RULES, check_face_choice

if TYPE_CHECKING:
    from core.pipeline.embeddings import Pipeline


def add_pipeline_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--detector", default=DEFAULT_DETECTOR,
                        help=f"face detector (default {DEFAULT_DETECTOR}; an unknown name lists the others)")
    parser.add_argument("--backbone", default=None, help="embedding model; default: the most preferred one usable "
                        "here (VGG-Face when its weights are present, else dlib's ResNet); an unknown name lists them")
    parser.add_argument("--no-align", action="store_true",
                        help="do not rotate faces to level the eyes: the same crop, only not rotated")
    parser.add_argument("--crop", default=DEFAULT_CROP, choices=tuple(CROPS),
                        help=f"which square is cut: {'; '.join(f'{name}: {what}' for name, what in CROPS.items())} "
                             f"(default {DEFAULT_CROP})".replace("%", "%%"))  # argparse formats help with %
    parser.add_argument("--face-choice", default=DEFAULT_FACE_CHOICE, metavar="RULE",
                        help=f"which face of a photo with several is used ({' or '.join(RULES)}): 'central' is the "
                             f"large, central, whole face the detector is surest of; default {DEFAULT_FACE_CHOICE}")


def add_run_argument(parser: argparse.ArgumentParser) -> None:
    """``--run``: embed with a fine-tuned run's network instead of a pretrained backbone (with add_pipeline_arguments)."""
    parser.add_argument("--run", metavar="RUN_ID", default=None,
                        help="embed with the network of this fine-tuned run (mode 'finetune'), faces cut as for the "
                             "backbone it grew from; instead of --backbone")


def build_pipeline(args: argparse.Namespace) -> Pipeline:
    """The Pipeline the options describe (models load once per process)."""
    from core.api import pipeline
    from core.services import finetuned

    check_face_choice(args.face_choice)  # before any model loads
    run = getattr(args, "run", None)
    if run is None:
        return pipeline(args.detector, args.backbone, align=not args.no_align, face_choice=args.face_choice,
                        crop=args.crop)
    if args.backbone is not None:
        raise ValueError("--run and --backbone both choose the face model; give one of them.")
    return finetuned.pipeline(args.detector, f"{finetuned.RUN_PREFIX}{run}", align=not args.no_align,
                              face_choice=args.face_choice, crop=args.crop)


def progress_printer(label: str):
    """A (done, total) callback that redraws one progress line on standard error."""

    def report(done: int, total: int) -> None:
        end = "\n" if done == total else ""
        print(f"\r{label}: {done}/{total}", end=end, file=sys.stderr, flush=True)

    return report
