"""The Predict page's gallery and detail view: widgets over ``core.services.predict``.

Every figure, filter and picture comes from the service; this module only lays them out
and writes the captions (Streamlit markdown).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from core.compare.unknown import UnknownRule
from core.data.layout import thumbnail
from core.data.paging import page, page_count
from core.images import ImageError, downscale
from core.services.predict import (
    EVERYONE,
    SORTS,
    Batch,
    DatasetGone,
    FacePrediction,
    PhotoFilter,
    PhotoPrediction,
    Predictor,
    face_crop,
    filter_photos,
    load_source,
    nearest_training_photos,
    people_in,
    show_options,
)
from pages.common import plain, user_errors

PER_PAGE = 12
COLUMNS = 4
THUMB = 256  # longer side of a gallery photo, in pixels
DETAIL = 900  # longer side of the photo in the detail view
CROP = 160
NEAREST = 4  # training photos shown per face


def short(name: str, length: int = 28) -> str:
    """The file name without its folders, cut to ``length`` characters so captions stay one line."""
    stem = Path(name).name
    return stem if len(stem) <= length else stem[:length - 1] + "…"


def caption(photo: PhotoPrediction) -> str:
    """Markdown under a photo: its faces' names, green when right, red when wrong, then the file name."""
    name = plain(short(photo.name))
    if photo.error is not None:
        return f":orange[unusable] · {name}"
    if not photo.faces:
        verdict = "no face found"
    else:
        verdict = ", ".join(plain(f.text) for f in photo.faces[:3])
        verdict += f" +{len(photo.faces) - 3}" if len(photo.faces) > 3 else ""
    if photo.correct is not None:
        verdict = f":{'green' if photo.correct else 'red'}[{verdict} · {plain(photo.verdict)}]"
    return f"{verdict}  \n{name}"


def pick_filter(photos: list[PhotoPrediction]) -> PhotoFilter:
    """The gallery's four filter widgets in a row."""
    columns = st.columns(4)
    person = columns[0].selectbox("Person", [EVERYONE, *people_in(photos)], key="pr_person",
                                  help="Photos of this person, or where a face was taken for them.")
    show = columns[1].selectbox("Show", show_options(photos), key="pr_show")
    low = columns[2].slider("Low confidence means below", 0.0, 1.0, 0.8, 0.05, key="pr_low",
                            disabled=show != "Low confidence")
    order = columns[3].selectbox("Sort", SORTS, key="pr_sort")
    return PhotoFilter(person, show, low, order)


def show_gallery(predictor: Predictor, batch: Batch, photos: list[PhotoPrediction], detail_key: str) -> None:
    """A page of annotated thumbnails with their captions; Details puts a photo in the detail view."""
    chosen = filter_photos(photos, pick_filter(photos))
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
                        st.image(batch.annotated_jpeg(predictor, index, photo, THUMB))
                else:
                    st.warning(plain(f"{short(photo.name)}: {photo.error}"))
                st.caption(caption(photo))
                st.button("Details", key=f"pr_details_{index}", on_click=st.session_state.__setitem__,
                          args=(detail_key, index))


def show_nearest(predictor: Predictor, face: FacePrediction) -> None:
    """The training photos of the face's best guess closest to it, to see why the model chose that person."""
    person = face.best_guess
    try:
        nearest = nearest_training_photos(predictor, face, NEAREST)
    except DatasetGone as gone:
        st.caption(plain(f"The training photos of {person} cannot be shown: {gone}."))
        return
    if not nearest:
        st.caption(plain(f"No training photo of {person} is stored with this run."))
        return
    st.caption(plain(f"Nearest training photos of {person}"))
    for column, (path, distance) in zip(st.columns(NEAREST), nearest):
        try:
            column.image(thumbnail(path, 120), caption=f"distance {distance:.3f}")
        except ImageError as exc:
            column.caption(plain(f"{path.name}: {exc}"))


def show_face(predictor: Predictor, image: np.ndarray, number: int, face: FacePrediction, rule: UnknownRule) -> None:
    """One face: its close-up, the verdict with the top three guesses, and its nearest training photos."""
    left, middle, right = st.columns([1, 2, 4])
    with left:
        st.image(downscale(face_crop(image, face), CROP)[0], caption=f"Face {number}", width="stretch")
    with middle:
        guess = plain(face.best_guess)
        verdict = f"**{guess}** · confidence {face.confidence:.0%}" if not face.unknown else \
            f"**unknown** (closest: {guess}, {face.confidence:.0%})"
        st.markdown(verdict)
        st.dataframe(pd.DataFrame(face.top3, columns=["person", "probability"]), hide_index=True,
                     column_config={"probability": st.column_config.ProgressColumn(
                         "probability", format="percent", min_value=0.0, max_value=1.0)})
        if face.distance is not None:
            limit = "" if rule.max_distance is None else f" (limit {rule.max_distance:.3f})"
            st.caption(plain(f"Distance to the nearest training face of {face.best_guess}: {face.distance:.3f}{limit}. "
                             f"Detector score {face.detector_score:.2f}."))
    with right:
        show_nearest(predictor, face)


def show_detail(predictor: Predictor, batch: Batch, photos: list[PhotoPrediction], rule: UnknownRule,
                detail_key: str) -> None:
    """The chosen photo large, then every face in it."""
    st.subheader("Photo detail")
    st.selectbox("Photo", range(len(photos)), key=detail_key, format_func=lambda i: short(photos[i].name, 60),
                 help="Or click Details under a photo in the gallery.")
    index = st.session_state[detail_key]
    photo = photos[index]
    if photo.error is not None:
        st.warning(plain(f"{photo.name} could not be used: {photo.error}"))
        return
    with user_errors(f"Could not show {short(photo.name)}"):
        image = load_source(batch.sources[index])
        st.image(batch.annotated_jpeg(predictor, index, photo, DETAIL))
        st.caption(caption(photo))
        if not photo.faces:
            st.info("No face was found in this photo.")
        for number, face in enumerate(photo.faces, 1):
            show_face(predictor, image, number, face, rule)
