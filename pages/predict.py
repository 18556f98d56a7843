"""Predict page: name every face in test photos, uploads or a webcam shot with a trained run.

A view over ``core.prediction``. Each (run, photos) pair is predicted once per browser
session and kept in ``st.session_state``, so filters, paging, the detail view and the
unknown-face thresholds never re-embed anything: moving a threshold re-labels the stored
predictions with ``core.prediction.relabel``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from core.compare.unknown import UnknownRule
from core.data.layout import fingerprint, scan, thumbnail
from core.data.paging import page, page_count
from core.images import ImageError, downscale, encode_jpeg
from core.pipeline.embeddings import Source
from core.runs import RunInfo, active_run, list_runs
from core.services.predict import (
    FacePrediction,
    PhotoPrediction,
    Predictor,
    accuracy,
    annotated_zip,
    load_source,
    per_person,
    photo_sources,
    predictions_csv,
    predictor_for_run,
    relabel,
)
from pages.common import dataset_picker, ensure_app_navigation, progress_callback, user_errors

ensure_app_navigation()

PER_PAGE = 12
COLUMNS = 4
THUMB = 256  # longer side of a gallery photo, in pixels
DETAIL = 900  # longer side of the photo in the detail view
CROP = 160
NEAREST = 4  # training photos shown per face
KEEP = 4  # predictions kept per session, newest first; older ones are recomputed (from the cache) if needed
SOURCES = ("Test split of the run's dataset", "Test split of another dataset", "Upload photos", "Webcam")
SHOW = ("All photos", "Correct", "Incorrect", "With unknown faces", "Low confidence", "No face found", "Unusable")
SORTS = ("File order", "Confidence: lowest first", "Confidence: highest first")
EVERYONE = "Everyone"


@dataclass(frozen=True)
class Request:
    """Photos to predict: ``key`` identifies them (path and fingerprint, or content hashes) for the session store."""

    key: str
    label: str
    sources: list[Source]
    truths: list[str | None]


@dataclass
class Batch:
    """One prediction request kept in the session: what was predicted, and the raw (unthresholded) results."""

    label: str
    sources: list[Source]  # paths, or (name, bytes) for uploads and webcam shots
    photos: list[PhotoPrediction]
    thumbs: dict[tuple, bytes] = field(default_factory=dict)  # (index, face labels) → annotated JPEG


@st.cache_resource(show_spinner="Loading the run…", max_entries=4)
def load_predictor(run_id: str) -> Predictor:
    """The run's head and pipeline, shared by every session (never mutated: thresholds go through relabel)."""
    return predictor_for_run(run_id)


# --- choosing the run and the photos -----------------------------------------------------------------


def pick_run(runs: list[RunInfo]) -> str:
    ids = [run.id for run in runs]
    names = {run.id: f"{run.name} · {run.created[:16].replace('T', ' ')} ({run.id})" for run in runs}
    active = active_run()
    return st.selectbox("Run", ids, index=ids.index(active) if active in ids else 0, key="pr_run",
                        format_func=names.__getitem__, help="The active run (chosen on the Train page) comes first.")


def dataset_source(path: Path) -> Request:
    """A dataset's labelled test split; the key changes when its files change."""
    paths, truths = photo_sources(path)
    return Request(f"dataset:{path}:{fingerprint(scan(path))}", f"the test split of {path.name}", list(paths), truths)


def upload_source(files: list[Any], label: str) -> Request:
    """Uploaded files (Streamlit UploadedFile) as unlabelled photos, keyed by their names and contents."""
    sources: list[Source] = [(f.name, f.getvalue()) for f in files]
    digest = hashlib.sha256()
    for name, data in sources:
        digest.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    return Request(f"upload:{digest.hexdigest()}", label, sources, [None] * len(sources))


def pick_source(predictor: Predictor) -> Request | None:
    """The photos to predict, or None (with a message) while none are chosen."""
    choice = st.radio("Photos", SOURCES, horizontal=True, key="pr_source")
    if choice == SOURCES[0]:
        root = Path(predictor.run.config.dataset)
        if not predictor.run.config.dataset or not root.is_dir():
            st.warning(f"The run's dataset folder ({root}) is not on this server any more; "
                       "pick another dataset or upload photos.")
            return None
        return dataset_source(root)
    if choice == SOURCES[1]:
        root = dataset_picker("Dataset", key="pr_dataset")
        return None if root is None else dataset_source(root)
    if choice == SOURCES[2]:
        files = st.file_uploader("Photos (several at once, group photos welcome)", accept_multiple_files=True,
                                 key="pr_upload")
        if not files:
            st.info("Upload one or more photos.")
            return None
        return upload_source(files, f"{len(files)} uploaded photo(s)")
    shot = st.camera_input("Webcam", key="pr_camera")
    if shot is None:
        st.info("Take a shot with the webcam.")
        return None
    return upload_source([shot], "a webcam shot")


def predicted_batch(run_id: str, predictor: Predictor, request: Request) -> Batch:
    """The session's stored predictions for (run, photos), computed on first request only."""
    batches: dict[str, Batch] = st.session_state.setdefault("pr_batches", {})
    full_key = f"{run_id}|{request.key}"
    if full_key not in batches:
        bar = st.progress(0.0, text="Predicting…")
        photos = predictor.predict(request.sources, request.truths, progress=progress_callback(bar, "Predicting"))
        bar.empty()
        batches[full_key] = Batch(request.label, request.sources, photos)
        for old in list(batches)[:-KEEP]:
            del batches[old]
    return batches[full_key]


# --- thresholds and summary ---------------------------------------------------------------------------


def pick_rule(run_id: str, predictor: Predictor) -> UnknownRule:
    """Sliders for the unknown-face rule, starting at the run's calibrated values (keys per run)."""
    base = predictor.rule
    left, right = st.columns(2)
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
    faces = [face for photo in photos for face in photo.faces]
    acc = accuracy(photos)
    judged = [p for p in photos if p.correct is not None]
    figures = [("Photos", len(photos)), ("Faces", len(faces)),
               ("Accuracy", "—" if acc is None else f"{acc:.1%}"),
               ("Correct", f"{sum(p.correct for p in judged)} / {len(judged)}" if judged else "—"),
               ("Unknown faces", sum(face.unknown for face in faces)),
               ("No face", sum(p.error is None and not p.faces for p in photos))]
    for column, (label, value) in zip(st.columns(len(figures)), figures):
        column.metric(label, value)
    for photo in photos:
        if photo.error is not None:
            st.error(f"{photo.name}: {photo.error}")
    strangers = sorted({p.truth for p in judged if p.truth not in known})
    if strangers:
        st.caption(f"{len(strangers)} person(s) in these photos are not known to the run "
                   f"({', '.join(strangers[:5])}{'…' if len(strangers) > 5 else ''}): the best answer for them "
                   "is 'unknown', which the accuracy counts as wrong.")
    rows = per_person(photos)
    if rows:
        st.dataframe(pd.DataFrame(rows), hide_index=True, column_config={
            "accuracy": st.column_config.ProgressColumn("accuracy", format="percent", min_value=0.0, max_value=1.0),
            "unknown": st.column_config.NumberColumn("rejected as unknown")})


def show_downloads(run_id: str, predictor: Predictor, batch: Batch, photos: list[PhotoPrediction]) -> None:
    left, right = st.columns(2)
    left.download_button("Download predictions (CSV)", predictions_csv(photos), file_name=f"predictions-{run_id}.csv",
                         mime="text/csv", key="pr_csv", on_click="ignore")
    right.download_button("Download annotated photos (zip)", lambda: annotated_zip(predictor, batch.sources, photos),
                          file_name=f"annotated-{run_id}.zip", mime="application/zip", key="pr_zip",
                          on_click="ignore", help="Built when you click; large photo sets take a moment.")


# --- gallery -------------------------------------------------------------------------------------------


def annotated_jpeg(predictor: Predictor, batch: Batch, index: int, photo: PhotoPrediction, size: int) -> bytes:
    """The photo with its current labels, shrunk to ``size``; kept in the batch so paging stays instant."""
    key = (index, size, tuple(face.label for face in photo.faces))
    if key not in batch.thumbs:
        batch.thumbs[key] = encode_jpeg(predictor.annotate(load_source(batch.sources[index]), photo, max_side=size))
    return batch.thumbs[key]


def photo_confidence(photo: PhotoPrediction) -> float | None:
    return photo.faces[0].confidence if photo.faces else None


def matches(photo: PhotoPrediction, person: str, show: str, low: float) -> bool:
    if person != EVERYONE and photo.truth != person and all(f.best_guess != person for f in photo.faces):
        return False
    return {
        "All photos": True,
        "Correct": photo.correct is True,
        "Incorrect": photo.correct is False,
        "With unknown faces": any(face.unknown for face in photo.faces),
        "Low confidence": any(face.confidence < low for face in photo.faces),
        "No face found": photo.error is None and not photo.faces,
        "Unusable": photo.error is not None,
    }[show]


def filtered(photos: list[PhotoPrediction]) -> list[int]:
    """Indices of the photos the filters let through, in the chosen order."""
    people = sorted({p.truth for p in photos if p.truth} | {f.best_guess for p in photos for f in p.faces})
    labelled = any(p.truth is not None for p in photos)
    shows = [s for s in SHOW if labelled or s not in ("Correct", "Incorrect")]
    columns = st.columns(4)
    person = columns[0].selectbox("Person", [EVERYONE, *people], key="pr_person",
                                  help="Photos of this person, or where a face was taken for them.")
    show = columns[1].selectbox("Show", shows, key="pr_show")
    low = columns[2].slider("Low confidence means below", 0.0, 1.0, 0.8, 0.05, key="pr_low",
                            disabled=show != "Low confidence")
    order = columns[3].selectbox("Sort", SORTS, key="pr_sort")
    chosen = [i for i, photo in enumerate(photos) if matches(photo, person, show, low)]
    if order != SORTS[0]:
        highest = order == SORTS[2]

        def rank(i: int) -> tuple[bool, float]:
            confidence = photo_confidence(photos[i])
            if confidence is None:
                return True, 0.0  # photos without a face go last either way
            return False, -confidence if highest else confidence

        chosen.sort(key=rank)
    return chosen


def short(name: str, length: int = 28) -> str:
    stem = Path(name).name
    return stem if len(stem) <= length else stem[:length - 1] + "…"


def escape(text: str) -> str:
    """Text shown literally inside Streamlit markdown (file names may hold *, _, [ or :)."""
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|<>~:$])", r"\\\1", text)


def caption(photo: PhotoPrediction) -> str:
    """Markdown under a photo: its faces' names, green when right, red when wrong, then the file name."""
    name = escape(short(photo.name))
    if photo.error is not None:
        return f":orange[unusable] · {name}"
    if not photo.faces:
        verdict = "no face found"
    else:
        verdict = ", ".join(f"**{escape(f.label)}** {f.confidence:.0%}" for f in photo.faces[:3])
        verdict += f" +{len(photo.faces) - 3}" if len(photo.faces) > 3 else ""
    if photo.correct is True:
        verdict = f":green[{verdict} · right]"
    elif photo.correct is False:
        verdict = f":red[{verdict} · wrong, is {escape(photo.truth or '')}]"
    return f"{verdict}  \n{name}"


def show_gallery(predictor: Predictor, batch: Batch, photos: list[PhotoPrediction], detail_key: str) -> None:
    chosen = filtered(photos)
    st.caption(f"{len(chosen)} of {len(photos)} photo(s)")
    if not chosen:
        st.info("No photo matches these filters.")
        return
    pages = page_count(len(chosen), PER_PAGE)
    number = int(st.number_input(f"Page (of {pages})", 1, pages, 1, key="pr_page")) if pages > 1 else 1
    shown = page(chosen, number, PER_PAGE)
    for row in range(0, len(shown), COLUMNS):
        for column, index in zip(st.columns(COLUMNS), shown[row:row + COLUMNS]):
            photo = photos[index]
            with column:
                if photo.error is None:
                    with user_errors(short(photo.name)):
                        st.image(annotated_jpeg(predictor, batch, index, photo, THUMB))
                else:
                    st.warning(f"{short(photo.name)}: {photo.error}")
                st.caption(caption(photo))
                st.button("Details", key=f"pr_details_{index}", on_click=st.session_state.__setitem__,
                          args=(detail_key, index))


# --- detail --------------------------------------------------------------------------------------------


def face_crop(image: np.ndarray, face: FacePrediction) -> np.ndarray:
    """The face with a margin of a fifth of its size around it."""
    x, y, w, h = face.box
    mx, my = w // 5, h // 5
    return image[max(0, y - my):y + h + my, max(0, x - mx):x + w + mx]


def show_nearest(predictor: Predictor, face: FacePrediction) -> None:
    person = face.best_guess
    nearest = predictor.nearest_training(face, person, NEAREST)
    if not nearest:
        st.caption(f"No training photo of {person} is stored with this run.")
        return
    root = Path(predictor.run.config.dataset)
    if not root.is_dir() or not predictor.gallery_paths:
        st.caption(f"The training photos of {person} cannot be shown: the run's dataset folder ({root}) "
                   "is not on this server any more.")
        return
    st.caption(f"Nearest training photos of {person}")
    for column, (gallery_index, distance) in zip(st.columns(NEAREST), nearest):
        relative = predictor.gallery_paths[gallery_index]
        try:
            column.image(thumbnail(root / relative, 120), caption=f"distance {distance:.3f}")
        except ImageError as exc:
            column.caption(f"{Path(relative).name}: {exc}")


def show_face(predictor: Predictor, image: np.ndarray, number: int, face: FacePrediction, rule: UnknownRule) -> None:
    left, middle, right = st.columns([1, 2, 4])
    with left:
        st.image(downscale(face_crop(image, face), CROP)[0], caption=f"Face {number}", width="stretch")
    with middle:
        guess = escape(face.best_guess)
        verdict = f"**{guess}**" if not face.unknown else f"**unknown** (best guess: {guess})"
        st.markdown(f"{verdict} · confidence {face.confidence:.0%}")
        st.dataframe(pd.DataFrame(face.top3, columns=["person", "probability"]), hide_index=True,
                     column_config={"probability": st.column_config.ProgressColumn(
                         "probability", format="percent", min_value=0.0, max_value=1.0)})
        if face.distance is not None:
            limit = "" if rule.max_distance is None else f" (limit {rule.max_distance:.3f})"
            st.caption(f"Distance to the nearest training face of {face.best_guess}: {face.distance:.3f}{limit}. "
                       f"Detector score {face.detector_score:.2f}.")
    with right:
        show_nearest(predictor, face)


def show_detail(predictor: Predictor, batch: Batch, photos: list[PhotoPrediction], rule: UnknownRule,
                detail_key: str) -> None:
    st.subheader("Photo detail")
    st.selectbox("Photo", range(len(photos)), key=detail_key, format_func=lambda i: short(photos[i].name, 60),
                 help="Or click Details under a photo in the gallery.")
    index = st.session_state[detail_key]
    photo = photos[index]
    if photo.error is not None:
        st.warning(f"{photo.name} could not be used: {photo.error}")
        return
    with user_errors(f"Could not show {short(photo.name)}"):
        image = load_source(batch.sources[index])
        st.image(annotated_jpeg(predictor, batch, index, photo, DETAIL))
        st.caption(caption(photo))
        if not photo.faces:
            st.info("No face was found in this photo.")
        for number, face in enumerate(photo.faces, 1):
            show_face(predictor, image, number, face, rule)


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
    st.subheader(f"Summary: {batch.label}")
    show_summary(photos, predictor.run.labels)
    show_downloads(run_id, predictor, batch, photos)
    st.subheader("Gallery")
    detail_key = f"pr_detail_{hashlib.sha256(request.key.encode()).hexdigest()[:12]}"
    show_gallery(predictor, batch, photos, detail_key)
    show_detail(predictor, batch, photos, rule, detail_key)


main()
