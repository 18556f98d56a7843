"""``python -m core verify IMG1 IMG2``: are the two photos the same person?

Thresholds come from a calibration (``python -m core calibrate``) of the workspace: the one made on
``--calibration DATASET`` when given (refused, with the reason, when it is not sound: see
``core.services.calibrate.calibration_problem``), else the newest sound calibration made with
the same detector, alignment and backbone on any dataset (newer unsound ones are skipped, and
the output says so); without one, the backbone's documented defaults are used and the output
says so (``threshold_source``: "default"). The output names the calibration's dataset.

``--run RUN_ID`` embeds with a fine-tuned run's network (``core.services.finetuned``): its calibrations are its
own, and its uncalibrated thresholds the ones it measured on its validation faces (``default_thresholds_from``).
"""

from __future__ import annotations

import argparse
from typing import Any

from core.cli import CliError
from core.cli._pipeline import add_pipeline_arguments, add_run_argument, build_pipeline

HELP = "compare the faces in two photos: distances, thresholds and a same-person verdict"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image1", help="first photo")
    parser.add_argument("image2", help="second photo")
    add_pipeline_arguments(parser)
    add_run_argument(parser)
    parser.add_argument("--face1", type=int, default=0, help="which face of image1 (0 = the one --face-choice picks, the default)")
    parser.add_argument("--face2", type=int, default=0, help="which face of image2 (0 = the one --face-choice picks, the default)")
    parser.add_argument("--calibration", metavar="DATASET", default=None,
                        help="use the calibration made on this dataset (name or folder); default: the newest "
                             "calibration made with the same detector, alignment and backbone")


def run(args: argparse.Namespace) -> dict[str, Any]:
    from core.data.layout import resolve
    from core.images import read_file
    from core.services import calibrate as calibrate_service
    from core.services import verify as service

    data = [read_file(args.image1), read_file(args.image2)]  # fail on a missing or endless file before loading any model
    pipeline = build_pipeline(args)
    photos = service.analyse_photos(pipeline, list(zip(data, (args.image1, args.image2))))
    faces = [photos[0].face(args.face1), photos[1].face(args.face2)]
    calibration_root = resolve(args.calibration) if args.calibration else None
    choice = calibrate_service.choose_calibration(pipeline, calibration_root)
    calibration = choice.calibration
    if calibration_root is not None and calibration is None:
        why = choice.notes or [f"no calibration for {args.calibration} with this detector, alignment and backbone"]
        raise CliError(f"{'; '.join(why)}; to calibrate it (again): python -m core calibrate {args.calibration}")
    verdict = service.compare(pipeline, faces[0], faces[1], calibration)
    result: dict[str, Any] = {
        **verdict.to_dict(),
        "detector": pipeline.detector.name,
        "backbone": pipeline.backbone.name,
        "run": args.run,
        "align": pipeline.align,
        "crop": pipeline.crop,
        "face_choice": pipeline.face_choice,
        "calibration": None if calibration is None else {
            "dataset": calibration.context.get("dataset"), "dataset_name": calibration.context.get("dataset_name"),
            "created": calibration.created, "auc": calibration.metrics[calibration.metric].auc,
            "n_people": calibration.n_people, "target_far": calibration.target_far},
        "calibration_notes": choice.notes,
        "default_thresholds_from": None if calibration is not None else service.default_thresholds_note(pipeline),
        "faces": [{"photo": photo.name, "faces_found": photo.found, "note": photo.note, **face.to_dict(index)}
                  for photo, face, index in zip(photos, faces, (args.face1, args.face2))],
    }
    answer = "same person" if verdict.verified else "different people"
    source = "calibrated" if calibration is not None else "default (not calibrated)"
    lines = [f"{answer}: P(same person) = {verdict.confidence:.0%}",
             f"  {verdict.metric} distance {verdict.distance:.4f}, {source} threshold {verdict.threshold:.4f}",
             *([f"  thresholds from {choice.source}"] if calibration else []), *(f"  {note}" for note in choice.notes)]
    if result["default_thresholds_from"]:
        lines.append(f"  thresholds from {result['default_thresholds_from']}")
    lines += [f"  {check.metric:<13} {check.distance:.4f}  (threshold {check.threshold:.4f})"
              for check in service.metric_checks(verdict)]
    lines += [f"  {photo.name}: {photo.note}" for photo in photos if photo.note]
    result["text"] = "\n".join(lines)
    return result
