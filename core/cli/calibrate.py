"""``python -m core calibrate DATASET``: learn verification thresholds on a labelled dataset.

Every photo of every split is embedded (the embedding cache is reused); all genuine pairs
and a sample of impostor pairs give the ROC curve, its AUC and equal-error rate, and a
threshold (at the EER, or at ``--target-far``). The calibration is saved for this dataset,
detector, alignment and backbone (or ``--run``'s fine-tuned network), where ``python -m core verify`` and the
Verify page find it.
"""

from __future__ import annotations

import argparse
from typing import Any

from core.cli import log
from core.cli._pipeline import add_pipeline_arguments, add_run_argument, build_pipeline, progress_printer

HELP = "calibrate verification thresholds (ROC, AUC, EER) on a labelled dataset and save them"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", help="dataset folder (train/, validation/, test/) or a FaceLab dataset name")
    add_pipeline_arguments(parser)
    add_run_argument(parser)
    parser.add_argument("--target-far", type=float, default=None, metavar="F",
                        help="pick the threshold whose false-accept rate is at most F (e.g. 0.01); "
                             "default: the equal-error threshold")


def run(args: argparse.Namespace) -> dict[str, Any]:
    from core.compare.calibration import calibration_path
    from core.data.layout import resolve
    from core.services import calibrate as calibrate_service
    from core.services import gallery as gallery_service

    if args.target_far is not None and not 0.0 <= args.target_far <= 1.0:
        raise ValueError(f"--target-far must be between 0 and 1, got {args.target_far}")
    root = resolve(args.dataset)
    pipeline = build_pipeline(args)
    gallery = gallery_service.build_gallery(pipeline, root, progress=progress_printer("embedding"))
    for name in gallery.no_face:
        log(f"no face: {name}")
    calibration = calibrate_service.calibrate_gallery(pipeline, gallery, args.target_far)
    chosen = calibration.metrics[calibration.metric]
    result: dict[str, Any] = {
        "dataset": str(root),
        "metric": calibration.metric,
        "metric_chosen_by": calibration.metric_chosen_by,
        "decision": calibration.decision,
        "auc": chosen.auc,
        "eer": chosen.eer,
        "threshold": chosen.threshold,
        "far": chosen.far,
        "tar": chosen.tar,
        "target_far": calibration.target_far,
        "n_genuine": calibration.n_genuine,
        "n_impostor": calibration.n_impostor,
        "n_people": calibration.n_people,
        "n_embeddings": calibration.n_embeddings,
        "photos": gallery.photos,
        "no_face": gallery.no_face,
        "errors": gallery.errors,
        "thresholds": calibration.thresholds,
        "auc_per_metric": calibration.auc,
        "eer_per_metric": calibration.eer,
        "context": calibration.context,
        "saved": str(calibration_path(calibration.context)),
    }
    rule = "at the equal-error rate" if args.target_far is None else f"at a false-accept rate ≤ {args.target_far:g}"
    result["text"] = "\n".join([
        f"{pipeline.detector.name} + {pipeline.backbone.name} (align={pipeline.align}, crop={pipeline.crop}) on {root.name}: "
        f"{calibration.n_embeddings} faces of {calibration.n_people} people, "
        f"{calibration.n_genuine} genuine and {calibration.n_impostor} impostor pairs",
        f"  {calibration.decision}",
        f"  {calibration.metric}: AUC {chosen.auc:.4f}, EER {chosen.eer:.2%}, threshold {chosen.threshold:.4f} {rule} "
        f"(FAR {chosen.far:.2%}, TAR {chosen.tar:.2%})",
        *(f"  {name:<13} threshold {m.threshold:.4f}  AUC {m.auc:.4f}  EER {m.eer:.2%}"
          for name, m in calibration.metrics.items()),
        f"  {len(gallery.no_face)} photo(s) without a face, {len(gallery.errors)} unreadable; saved to {result['saved']}",
    ])
    return result
