"""Predict page: name every face in test photos, uploads or a webcam shot with a trained run.

A view over ``core.services.predict``. Each (run, photos) pair is predicted once per browser
session and kept in ``st.session_state`` (``stored_batch``), so filters, paging, the detail
view and the unknown-face thresholds never re-embed anything: moving a threshold re-labels
the stored predictions with ``relabel``. The gallery and the detail view are in
``pages/components/predict_views.py``.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from core.compare.unknown import UnknownRule
from core.runs import RunInfo, active_run, list_runs
from core.services.predict import (
    Batch,
    DatasetGone,
    PhotoPrediction,
    PhotoSet,
    Predictor,
    annotated_zip,
    dataset_photos,
    per_person,
    predictions_csv,
    predictor_for_run,
    relabel,
    run_test_split,
    stored_batch,
    summarize,
    uploaded_photos,
)
from pages.common import dataset_picker, ensure_app_navigation, plain, progress_callback, user_errors
from pages.components.layout import metric_row, wrapping_columns
from pages.components.predict_views import show_detail, show_gallery

ensure_app_navigation()

RULE_WIDTH = 340  # px: the checkbox's label whole; the two halves of the rule stack at 800 px
SOURCES = ("Test split of the run's dataset", "Test split of another dataset", "Upload photos", "Webcam")


@st.cache_resource(show_spinner="Loading the run…", max_entries=4)
def load_predictor(run_id: str) -> Predictor:
    """The run's head and pipeline, shared by every session (never mutated: thresholds go through relabel)."""
    return predictor_for_run(run_id)


# --- choosing the run and the photos -----------------------------------------------------------------


def pick_run(runs: list[RunInfo]) -> str:
    """The run to predict with; the active one is chosen first."""
    ids = [run.id for run in runs]
    names = {run.id: f"{run.name} · {run.created[:16].replace('T', ' ')} ({run.id})" for run in runs}
    active = active_run()
    return st.selectbox("Run", ids, index=ids.index(active) if active in ids else 0, key="pr_run",
                        format_func=names.__getitem__, help="The active run (chosen on the Train page) comes first.")


def pick_source(predictor: Predictor) -> PhotoSet | None:
    """The photos to predict, or None (with a message) while none are chosen."""
    choice = st.radio("Photos", SOURCES, horizontal=True, key="pr_source")
    if choice == SOURCES[0]:
        try:
            return run_test_split(predictor)
        except DatasetGone as gone:
            st.warning(plain(f"The test photos of the run's dataset cannot be shown: {gone}. "
                             "Pick another dataset or upload photos."))
            return None
    if choice == SOURCES[1]:
        root = dataset_picker("Dataset", key="pr_dataset")
        return None if root is None else dataset_photos(root)
    if choice == SOURCES[2]:
        files = st.file_uploader("Photos (several at once, group photos welcome)", accept_multiple_files=True,
                                 key="pr_upload")
        if not files:
            st.info("Upload one or more photos.")
            return None
        return uploaded_photos([(f.name, f.getvalue()) for f in files], f"{len(files)} uploaded photo(s)")
    shot = st.camera_input("Webcam", key="pr_camera")
    if shot is None:
        st.info("Take a shot with the webcam.")
        return None
    return uploaded_photos([(shot.name, shot.getvalue())], "a webcam shot")


def predicted_batch(run_id: str, predictor: Predictor, request: PhotoSet) -> Batch:
    """The session's stored predictions for (run, photos), with a progress bar the first time."""

    def predict(photos: PhotoSet) -> list[PhotoPrediction]:
        bar = st.progress(0.0, text="Predicting…")
        predicted = predictor.predict(photos.sources, photos.truths, progress=progress_callback(bar, "Predicting"),
                                      root=photos.root)
        bar.empty()
        return predicted

    return stored_batch(st.session_state.setdefault("pr_batches", {}), run_id, request, predict)


# --- thresholds and summary ---------------------------------------------------------------------------


def pick_rule(run_id: str, predictor: Predictor) -> UnknownRule:
    """Sliders for the unknown-face rule, starting at the run's calibrated values (keys per run)."""
    base = predictor.rule
    left, right = wrapping_columns(2, RULE_WIDTH)
    min_confidence = left.slider(
        "Minimum confidence", 0.0, 1.0, float(base.min_confidence), 0.01, key=f"pr_min_conf_{run_id}",
        help="A face whose best probability is below this is called unknown.")
    if base.max_distance is None:
        right.caption("This run has no calibrated distance threshold (it was trained without a validation "
                      "split), so only the confidence decides what is unknown.")
        return UnknownRule(min_confidence, None)
    use = right.checkbox("Reject faces far from every training photo of the person", True,
                         key=f"pr_use_dist_{run_id}")
    max_distance = right.slider(
        "Maximum distance (cosine)", 0.0, 1.0, float(round(base.max_distance, 3)), 0.005, format="%.3f",
        key=f"pr_max_dist_{run_id}", disabled=not use,
        help=f"Calibrated on the validation split at {base.max_distance:.3f}: a face farther than this from the "
             "nearest training photo of the person the model picked is called unknown.")
    return UnknownRule(min_confidence, max_distance if use else None)


def show_summary(photos: list[PhotoPrediction], known: list[str]) -> None:
    """The headline figures, one message per unusable photo, and the per-person table."""
    summary = summarize(photos, known)
    figures = [("Photos", summary.photos), ("Faces", summary.faces),
               ("Accuracy", "—" if summary.accuracy is None else f"{summary.accuracy:.1%}"),
               ("Correct", f"{summary.correct} / {summary.judged}" if summary.judged else "—"),
               ("Unknown faces", summary.unknown_faces), ("No face", summary.no_face)]
    metric_rows = [figures]
    if summary.stranger_photos:  # open-set: strangers are scored by rejection, apart from the run's people
        metric_rows.append([("Strangers rejected", f"{summary.rejected} / {summary.stranger_photos}"),
                            ("Rejection rate", f"{summary.rejection_rate:.1%}"),
                            ("False-accept rate", f"{summary.false_accept_rate:.1%}")])
    for row in metric_rows:
        metric_row(row)
    if summary.judged or summary.stranger_photos:
        st.caption(f"Accuracy of {summary.judged} photo(s) with a face of the run's people; "
                   f"{summary.no_face} without a face (not judged; Show: No face found).")
    for name, error in summary.errors:
        st.error(plain(f"{name}: {error}"))
    for name, note in summary.capped:
        st.info(plain(f"{name}: {note} (FACELAB_MAX_FACES)."))
    strangers = summary.strangers
    if strangers:
        st.caption(plain(f"{len(strangers)} person(s) in these photos are not known to the run "
                         f"({', '.join(strangers[:5])}{'…' if len(strangers) > 5 else ''}): the right answer for them "
                         f"is 'unknown'. {summary.rejected} of {summary.stranger_photos} stranger photo(s) were "
                         "correctly rejected; the accuracy counts only the run's own people."))
    rows = per_person(photos)
    if rows:
        st.dataframe(pd.DataFrame(rows), hide_index=True, column_config={
            "accuracy": st.column_config.ProgressColumn("accuracy", format="percent", min_value=0.0, max_value=1.0),
            "unknown": st.column_config.NumberColumn("rejected as unknown")})


def show_downloads(run_id: str, predictor: Predictor, batch: Batch, photos: list[PhotoPrediction]) -> None:
    """The predictions as CSV, and the annotated photos as a zip built only when clicked."""
    left, right = st.columns(2)
    left.download_button("Download predictions (CSV)", predictions_csv(photos), file_name=f"predictions-{run_id}.csv",
                         mime="text/csv", key="pr_csv", on_click="ignore")
    right.download_button("Download annotated photos (zip)", lambda: annotated_zip(predictor, batch.sources, photos),
                          file_name=f"annotated-{run_id}.zip", mime="application/zip", key="pr_zip",
                          on_click="ignore", help="Built when you click; large photo sets take a moment.")


# --- page ----------------------------------------------------------------------------------------------


def attempt(what: str, action: Any, *args: Any) -> Any:
    """``action(*args)``, or None after showing why it failed (never a stack trace)."""
    with user_errors(what):
        return action(*args)
    return None


def main() -> None:
    st.title("Predict")
    runs = list_runs()
    if not runs:
        st.info("No trained run yet: train one on the Train page, then come back to name the faces in new photos.")
        st.page_link("pages/train.py", label="Go to the Train page", icon=":material/model_training:")
        return
    run_id = pick_run(runs)
    predictor = attempt("Could not load the run", load_predictor, run_id)
    request = predictor and attempt("Could not read the photos", pick_source, predictor)
    batch = request and attempt("Prediction failed", predicted_batch, run_id, predictor, request)
    if not batch:
        return
    st.subheader("Unknown faces")
    rule = pick_rule(run_id, predictor)
    photos = relabel(batch.photos, rule)
    st.subheader(f"Summary: {plain(batch.label)}")
    show_summary(photos, predictor.run.labels)
    show_downloads(run_id, predictor, batch, photos)
    st.subheader("Gallery")
    detail_key = f"pr_detail_{request.short_id}"
    show_gallery(predictor, batch, photos, detail_key)
    show_detail(predictor, batch, photos, rule, detail_key)


main()
