"""The calibrate service: thresholds learnt on a labelled dataset, stored per pipeline, found again.

The Verify page and ``python -m core calibrate`` both calibrate through :func:`calibrate_gallery`;
:func:`calibration_curves` holds the numbers the page charts (the charts' look stays in the page).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.compare.calibration import Calibration, calibrate, list_calibrations, load_calibration, save_calibration
from core.pipeline.embeddings import Pipeline
from core.services.gallery import Gallery, dataset_fingerprint


def calibration_context(pipeline: Pipeline, dataset_fingerprint: str) -> dict[str, Any]:
    """The key a calibration is stored under: it only holds for this dataset and this exact pipeline."""
    return {"dataset": dataset_fingerprint, "detector": pipeline.detector.cache_key(),
            "align": pipeline.align, "backbone": pipeline.backbone.cache_key()}


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


@dataclass(frozen=True)
class CalibrationCurves:
    """What a calibration learnt about one metric, as chart coordinates: distance histograms and the ROC curve."""

    centres: np.ndarray  # histogram bin centres
    widths: np.ndarray  # histogram bin widths
    genuine_share: np.ndarray  # share of the genuine pairs in each bin (the two groups differ hugely in size)
    impostor_share: np.ndarray
    threshold: float
    roc_far: list[float]
    roc_tar: list[float]
    auc: float
    eer_point: tuple[float, float]  # (FAR, TAR) at the equal-error rate: FAR = 1 − TAR there
    chosen_point: tuple[float, float]  # (FAR, TAR) at the chosen threshold


def calibration_curves(calibration: Calibration, metric: str) -> CalibrationCurves:
    """The histogram and ROC coordinates of one metric of a calibration."""
    m = calibration.metrics[metric]
    edges = np.asarray(m.histogram_edges, dtype=float)
    return CalibrationCurves(
        centres=(edges[:-1] + edges[1:]) / 2, widths=np.diff(edges),
        genuine_share=np.asarray(m.genuine_counts, dtype=float) / max(1, calibration.n_genuine),
        impostor_share=np.asarray(m.impostor_counts, dtype=float) / max(1, calibration.n_impostor),
        threshold=m.threshold, roc_far=m.roc_far, roc_tar=m.roc_tar,
        auc=m.auc, eer_point=(m.eer, 1.0 - m.eer), chosen_point=(m.far, m.tar))
