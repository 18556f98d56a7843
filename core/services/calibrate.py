"""The calibrate service: thresholds learnt on a labelled dataset, stored per pipeline, found again.

The Verify page and ``python -m core calibrate`` both calibrate through :func:`calibrate_gallery`;
:func:`calibration_curves` holds the numbers the page charts (the charts' look stays in the page).
Calibrations live in the current workspace (``core.config``). A calibration decides verdicts only
when it is trustworthy (:func:`calibration_problem`): one made on mislabelled photos moves the
threshold until strangers pass as the same person, so :func:`choose_calibration` refuses or skips
it and says why.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.compare.calibration import Calibration, calibrate, list_calibrations, save_calibration
from core.pipeline.alignment import legacy_crop
from core.pipeline.embeddings import Pipeline
from core.services.gallery import Gallery, dataset_fingerprint

MIN_AUC = 0.9  # below this AUC (on the deciding metric) the dataset's labels or photos are not fit to set a threshold
PIPELINE_KEYS = ("detector", "align", "crop", "backbone")


def calibration_context(pipeline: Pipeline, dataset_fingerprint: str, dataset_name: str) -> dict[str, Any]:
    """The key a calibration is stored under: it only holds for this dataset and this exact pipeline.

    The dataset's name sits beside its fingerprint so a verdict can say which dataset set its threshold.
    """
    return {"dataset": dataset_fingerprint, "dataset_name": dataset_name, "detector": pipeline.detector.cache_key(),
            "align": pipeline.align, "crop": pipeline.crop, "backbone": pipeline.backbone.cache_key()}


def _setting(context: dict[str, Any], key: str) -> Any:
    """One of :data:`PIPELINE_KEYS` of a stored context; one saved before the crop setting existed gets the crop
    it was made with."""
    if key == "crop" and key not in context:
        return legacy_crop(bool(context.get("align", True)))
    return context.get(key)


def _made_with(pipeline: Pipeline) -> list[Calibration]:
    """The workspace's calibrations made with this detector, alignment and backbone, newest first."""
    wanted = calibration_context(pipeline, "", "")
    return [c for c in list_calibrations() if all(_setting(c.context, key) == wanted[key] for key in PIPELINE_KEYS)]


def find_calibration(pipeline: Pipeline, dataset: Path | str | None = None) -> Calibration | None:
    """The calibration made with this pipeline on ``dataset`` as it is now (preferring one under its name), else
    the newest one made with this pipeline on any dataset; None when there is none. It is not judged here:
    :func:`choose_calibration` does that.

    "This pipeline" means the same detector, rotation switch, crop and backbone (with their settings and weights).
    """
    found = _made_with(pipeline)
    if dataset is None:
        return found[0] if found else None
    same_photos = [c for c in found if c.context.get("dataset") == dataset_fingerprint(dataset)]
    same_name = [c for c in same_photos if c.context.get("dataset_name") == Path(dataset).name]
    return (same_name or same_photos or [None])[0]


def dataset_name(calibration: Calibration) -> str:
    """The name of the dataset a calibration was made on, as people read it."""
    name = calibration.context.get("dataset_name")
    return f"'{name}'" if name else "a dataset whose name was not recorded"


def calibration_problem(calibration: Calibration, dataset: Path | str | None = None) -> str | None:
    """Why ``calibration`` must not decide verdicts (None when it may): its AUC on the deciding metric is
    below :data:`MIN_AUC`, or it was made on another dataset than ``dataset``."""
    auc = calibration.metrics[calibration.metric].auc
    if auc < MIN_AUC:
        return (f"the calibration on {dataset_name(calibration)} separates same-person and different-people pairs "
                f"poorly ({calibration.metric} AUC {auc:.2f}, below {MIN_AUC}): its labels are probably wrong")
    if dataset is not None and calibration.context.get("dataset_name") != Path(dataset).name:
        return f"the calibration found was made on {dataset_name(calibration)}, not on '{Path(dataset).name}'"
    return None


@dataclass(frozen=True)
class CalibrationChoice:
    """The calibration verdicts use (None: the backbone's defaults) and the ones refused or skipped, each with why."""

    calibration: Calibration | None
    notes: list[str] = field(default_factory=list)

    @property
    def source(self) -> str:
        """Where the thresholds come from, in a few words."""
        if self.calibration is None:
            return "the backbone's defaults (not calibrated)"
        made = self.calibration
        return (f"the calibration on {dataset_name(made)} ({made.metric} AUC {made.metrics[made.metric].auc:.3f}, "
                f"made {made.created})")


def choose_calibration(pipeline: Pipeline, dataset: Path | str | None = None) -> CalibrationChoice:
    """The calibration verdicts should use, judged by :func:`calibration_problem`.

    For a named ``dataset``: its calibration, none (there is none), or none with the reason it was refused. Otherwise the
    newest sound calibration made with this pipeline; the newer ones that are not sound are skipped, each
    with its reason.
    """
    if dataset is not None:
        found = find_calibration(pipeline, dataset)
        if found is None:
            return CalibrationChoice(None)
        problem = calibration_problem(found, dataset)
        return CalibrationChoice(None, [f"refused: {problem}"]) if problem else CalibrationChoice(found)
    notes = []
    for calibration in _made_with(pipeline):
        problem = calibration_problem(calibration)
        if problem is None:
            return CalibrationChoice(calibration, notes)
        notes.append(f"skipped: {problem}")
    return CalibrationChoice(None, notes)


def calibrate_gallery(pipeline: Pipeline, gallery: Gallery, target_far: float | None = None) -> Calibration:
    """Calibrate on a gallery's genuine and impostor pairs, save it for this context and return it.

    The deciding metric is the one these pairs separate best (ties: the backbone's declared one).
    """
    if len(gallery.labels) < 2:
        raise ValueError(f"{gallery.root.name}: only {len(gallery.labels)} photo(s) with a face; "
                         "calibration needs at least two photos of one person and two people.")
    context = calibration_context(pipeline, gallery.fingerprint, gallery.root.name)
    calibration = calibrate(gallery.embeddings, gallery.labels, target_far=target_far, context=context,
                            default_metric=pipeline.backbone.decision_metric)
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
