"""The calibrate service: thresholds learnt on a labelled dataset, stored per pipeline, found again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.compare.calibration import Calibration, calibrate, list_calibrations, load_calibration, save_calibration
from core.data.layout import fingerprint, scan
from core.pipeline.embeddings import Pipeline
from core.services.gallery import Gallery


def calibration_context(pipeline: Pipeline, dataset_fingerprint: str) -> dict[str, Any]:
    """The key a calibration is stored under: it only holds for this dataset and this exact pipeline."""
    return {"dataset": dataset_fingerprint, "detector": pipeline.detector.cache_key(),
            "align": pipeline.align, "backbone": pipeline.backbone.cache_key()}


def dataset_fingerprint(root: Path | str) -> str:

    return fingerprint(scan(root))


def find_calibration(pipeline: Pipeline, dataset: Path | str | None = None) -> Calibration | None:
    """The calibration to verify with: for ``dataset`` when given, else the newest one made with this pipeline.

    "This pipeline" means the same detector, alignment switch and backbone (with their settings and
    weights), whatever the dataset.
    """
    if dataset is not None:
        return load_calibration(calibration_context(pipeline, dataset_fingerprint(dataset)))
    wanted = calibration_context(pipeline, "")
    for calibration in list_calibrations():
        if all(calibration.context.get(key) == wanted[key] for key in ("detector", "align", "backbone")):
            return calibration
    return None


def calibrate_gallery(pipeline: Pipeline, gallery: Gallery, target_far: float | None = None) -> Calibration:
    """Calibrate on a gallery's genuine and impostor pairs, save it for this context and return it."""
    if len(gallery.labels) < 2:
        raise ValueError(f"{gallery.root.name}: only {len(gallery.labels)} photo(s) with a face; "
                         "calibration needs at least two photos of one person and two people.")
    calibration = calibrate(gallery.embeddings, gallery.labels, metric=pipeline.backbone.decision_metric,
                            target_far=target_far, context=calibration_context(pipeline, gallery.fingerprint))
    save_calibration(calibration)
    return calibration
