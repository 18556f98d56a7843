"""Options shared by the commands that run the face pipeline (detector, backbone, alignment)."""

from __future__ import annotations

import argparse
import sys

from core.pipeline.detection import DEFAULT_DETECTOR


def add_pipeline_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--detector", default=DEFAULT_DETECTOR, help="face detector (haar, mtcnn, dlib-hog, dlib-cnn)")
    parser.add_argument("--backbone", default=None, help="embedding model (vggface16, dlib-resnet); default: "
                        "vggface16 when its weights are present, else dlib-resnet")
    parser.add_argument("--no-align", action="store_true", help="skip eye alignment (crop the detector box as is)")


def build_pipeline(args: argparse.Namespace):
    """The Pipeline the options describe (models load once per process)."""
    from core.pipeline.backbones import BACKBONES, default_backbone
    from core.pipeline.detection import DETECTORS
    from core.pipeline.embeddings import Pipeline

    backbone = args.backbone or default_backbone()
    return Pipeline(DETECTORS.get(args.detector), BACKBONES.get(backbone), align=not args.no_align)


def progress_printer(label: str):
    """A (done, total) callback that redraws one progress line on standard error."""

    def report(done: int, total: int) -> None:
        end = "\n" if done == total else ""
        print(f"\r{label}: {done}/{total}", end=end, file=sys.stderr, flush=True)

    return report
