"""``python -m core verify IMG1 IMG2``: are the two photos the same person?

Thresholds come from a calibration (``python -m core calibrate``): the one made on
``--calibration DATASET`` when given, else the newest calibration made with the same
detector, alignment and backbone on any dataset; without one, the backbone's documented
defaults are used and the output says so (``threshold_source``: "default").
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from core.cli import CliError
from core.cli._pipeline import add_pipeline_arguments, build_pipeline

HELP = "compare the faces in two photos: distances, thresholds and a same-person verdict"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image1", help="first photo")
    parser.add_argument("image2", help="second photo")
    add_pipeline_arguments(parser)
    parser.add_argument("--face1", type=int, default=0, help="which face of image1 (0 = the largest, the default)")
    parser.add_argument("--face2", type=int, default=0, help="which face of image2 (0 = the largest, the default)")
    parser.add_argument("--calibration", metavar="DATASET", default=None,
                        help="use the calibration made on this dataset (name or folder); default: the newest "
                             "calibration made with the same detector, alignment and backbone")


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise CliError(f"{path}: cannot be read ({exc.strerror or exc})") from exc


def run(args: argparse.Namespace) -> dict[str, Any]:
    from core.data.layout import resolve
    from core.services import calibrate as calibrate_service
    from core.services import verify as service

    data = [_read(args.image1), _read(args.image2)]  # fail on a missing file before loading any model
    pipeline = build_pipeline(args)
    photos = service.analyse_photos(pipeline, list(zip(data, (args.image1, args.image2))))
    faces = [photos[0].face(args.face1), photos[1].face(args.face2)]
    calibration_root = resolve(args.calibration) if args.calibration else None
    calibration = calibrate_service.find_calibration(pipeline, calibration_root)
    if calibration_root is not None and calibration is None:
        raise CliError(f"no calibration for {args.calibration} with this detector, alignment and backbone; "
                       f"run: python -m core calibrate {args.calibration}")
    verdict = service.compare(pipeline, faces[0], faces[1], calibration)
    result: dict[str, Any] = {
        **verdict.to_dict(),
        "detector": pipeline.detector.name,
        "backbone": pipeline.backbone.name,
        "align": pipeline.align,
        "calibration": None if calibration is None else {
            "dataset": calibration.context.get("dataset"), "created": calibration.created,
            "n_people": calibration.n_people, "target_far": calibration.target_far},
        "faces": [{"photo": photo.name, "faces_found": len(photo.faces), **face.to_dict(index)}
                  for photo, face, index in zip(photos, faces, (args.face1, args.face2))],
    }
    answer = "same person" if verdict.verified else "different people"
    source = "calibrated" if calibration is not None else "default (not calibrated)"
    lines = [f"{answer}: P(same person) = {verdict.confidence:.0%}",
             f"  {verdict.metric} distance {verdict.distance:.4f}, {source} threshold {verdict.threshold:.4f}"]
    lines += [f"  {check.metric:<13} {check.distance:.4f}  (threshold {check.threshold:.4f})"
              for check in service.metric_checks(verdict)]
    result["text"] = "\n".join(lines)
    return result
