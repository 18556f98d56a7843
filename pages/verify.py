"""Verify page: are two photos the same person? Every pipeline step shown, embeddings drawn as barcodes.

A thin view over ``core.services`` (verify, calibrate, gallery): this file only lays out widgets;
the larger views are in ``pages.components.verify_views``. Models load once per process (the
plug-in registries); each photo's faces and embeddings are cached by the photo's content hash
and the pipeline's settings, so a rerun that changes nothing recomputes nothing.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from core.compare.calibration import Calibration
from core.images import IMAGE_EXTENSIONS, content_hash
from core.pipeline.backbones import BACKBONES, default_backbone
from core.pipeline.detection import DEFAULT_DETECTOR, DETECTORS
from core.pipeline.embeddings import Pipeline
from core.services import calibrate as calibrate_service
from core.services import finetuned
from core.services import gallery as gallery_service
from core.services import verify as service
from pages.common import choose, dataset_picker, ensure_app_navigation, plain, progress_callback, user_errors
from pages.components import verify_views as views
from pages.components.alignment import align_toggle
from pages.components.face_choice import face_choice_select

ensure_app_navigation()

SOURCES = ("Upload", "Webcam", "From the dataset")
GALLERIES_KEPT = 4


# --- settings --------------------------------------------------------------------------------------------


def pipeline_from_sidebar() -> tuple[Pipeline | None, Path | None]:
    """The chosen pipeline (None while no model is usable) and reference dataset."""
    with st.sidebar:
        st.header("Pipeline")
        detector_name = choose("detector", DETECTORS, DEFAULT_DETECTOR, "vf_detector")
        runs = [(run.name, run.label, run.description) for run in finetuned.run_choices()]  # after the backbones
        backbone_name = choose("backbone", BACKBONES, default_backbone(), "vf_backbone", runs)
        align = align_toggle("vf_align")
        face_choice = face_choice_select("vf_face_choice")
        st.header("Reference dataset")
        root = dataset_picker("Dataset for calibration, search and photos", key="vf_dataset")
    if detector_name is None or backbone_name is None:
        return None, root
    with user_errors("Could not load the models"):
        with st.spinner("Loading the face models…"):  # shown only while the first session loads them
            pipeline = finetuned.pipeline(detector_name, backbone_name, align, face_choice)
        st.sidebar.caption(f"Weights loaded: {pipeline.backbone.name} ({pipeline.backbone.weights_id}), "
                           f"{pipeline.backbone.embedding_dim}-number embeddings.")
        return pipeline, root
    return None, root


# --- photos ----------------------------------------------------------------------------------------------


@st.cache_data(max_entries=32, show_spinner="Finding and embedding the faces…")
def analyse(digest: str, name: str, pipeline_key: str, _pipeline: Pipeline,
            _data: bytes) -> tuple[service.PhotoAnalysis | None, ValueError | None]:
    """(PhotoAnalysis, None), or (None, why the photo cannot be used); cached per photo bytes and pipeline,
    failures included, so a photo without a face is not searched again on every rerun."""
    try:
        return service.analyse_photo(_pipeline, _data, name, with_steps=True), None
    except ValueError as exc:  # ImageError and NoFaceError included
        return None, exc


def photo_from_dataset(root: Path | None, n: int) -> tuple[str, bytes] | None:
    """A labelled photo of the reference dataset, picked by person (photo n starts on the n-th person)."""
    if root is None:
        st.info("Pick a dataset in the sidebar first.")
        return None
    photos = service.labelled_photos(root)
    if not photos:
        st.warning("This dataset has no labelled photo.")
        return None
    people = list(photos)
    person = st.selectbox("Person", people, key=f"vf_person{n}", index=min(n - 1, len(people) - 1))
    record = st.selectbox("Photo", photos[person], key=f"vf_file{n}",
                          format_func=lambda r: f"{r.split}/{r.path.name}")
    return service.read_photo(record)


def photo_input(n: int, root: Path | None) -> tuple[str, bytes] | None:
    """The photo's (name, bytes) from the chosen source, or None while there is none."""
    source = st.radio(f"Photo {n} from", SOURCES, horizontal=True, key=f"vf_source{n}")
    if source == "Upload":
        upload = st.file_uploader(f"Photo {n}", type=sorted(e.lstrip(".") for e in IMAGE_EXTENSIONS),
                                  key=f"vf_upload{n}")
        return None if upload is None else (upload.name, upload.getvalue())
    if source == "Webcam":
        shot = st.camera_input(f"Photo {n}", key=f"vf_camera{n}")
        return None if shot is None else (f"webcam-{n}.jpg", shot.getvalue())
    return photo_from_dataset(root, n)


def pick_face(n: int, pipeline: Pipeline, root: Path | None) -> tuple[bool, tuple[str, service.FaceView] | None]:
    """One column of the page: source, photo, faces; returns (whether a photo was given, then (the photo's content
    hash, the chosen face) or None when it has no usable face)."""
    photo = photo_input(n, root)
    if photo is None:
        return False, None
    name, data = photo
    digest = content_hash(data)
    analysis, problem = analyse(digest, name, pipeline.key, pipeline, data)
    if isinstance(problem, service.NoFaceError):
        st.warning(plain(problem))
        return True, None
    if problem is not None or analysis is None:
        st.error(plain(f"Photo {n} cannot be used: {problem}"))
        return True, None
    index = 0
    if len(analysis.faces) > 1:
        st.image(analysis.overview, caption=f"{analysis.note or f'{len(analysis.faces)} faces found'}; face 1 (green) "
                                            f"is the one the '{pipeline.face_choice}' face choice uses")
        index = st.selectbox("Which face?", range(len(analysis.faces)), key=f"vf_face{n}",
                             format_func=lambda i: "face 1 (used)" if i == 0 else f"face {i + 1}")
    return True, (digest, analysis.faces[index])


# --- dataset: gallery and calibration ----------------------------------------------------------------------


@st.cache_resource
def galleries() -> gallery_service.GalleryStore:
    """Dataset embeddings shared by every session (a store, not a cached function: building one drives a
    progress bar that a cached function could not replay)."""
    return gallery_service.GalleryStore(GALLERIES_KEPT)


def load_gallery(pipeline: Pipeline, root: Path) -> gallery_service.Gallery:
    """The dataset's gallery, embedded under a progress bar the first time."""
    found = galleries().get(pipeline, root)
    if found is None:
        bar = st.progress(0.0, text="Embedding the dataset…")
        found = galleries().load(pipeline, root, progress=progress_callback(bar, "Embedding the dataset"))
        bar.empty()
    if found.no_face:
        st.caption(plain(f"{len(found.no_face)} photo(s) without a detected face were left out: "
                         + ", ".join(found.no_face[:10]) + (" …" if len(found.no_face) > 10 else "")))
    return found


def show_calibration(pipeline: Pipeline, root: Path | None, calibration: Calibration | None) -> None:
    """Calibrate on the reference dataset (then rerun so the verdict above uses it); chart the calibration in use."""
    st.subheader("Calibration")
    st.caption("Thresholds are learnt, not copied: all pairs of photos of the same person (genuine) and a sample "
               "of pairs of different people (impostors) from the reference dataset give the ROC curve; the "
               "threshold sits at the equal-error rate, or at a false-accept rate you choose.")
    if root is None:
        st.info("Pick a reference dataset in the sidebar to calibrate.")
        return
    rule = st.radio("Threshold at", ["equal-error rate", "target false-accept rate"], horizontal=True, key="vf_rule")
    target = None
    if rule == "target false-accept rate":
        target = st.number_input("Target false-accept rate", 0.0, 1.0, 0.01, 0.005, format="%.3f", key="vf_far")
    if st.button(f"Calibrate on {plain(root.name)}", key="vf_calibrate"):
        with user_errors("Calibration failed"):
            calibrate_service.calibrate_gallery(pipeline, load_gallery(pipeline, root), target)
            st.rerun()  # the verdict above is drawn before this button: redraw it with the new thresholds
    if calibration is not None:
        views.show_calibration_charts(calibration)


# --- page -------------------------------------------------------------------------------------------------


st.title("Verify")
st.caption("Are two photos the same person? Each photo goes detect → align → represent; the two embeddings are "
           "compared by distance against a calibrated threshold.")

pipeline, root = pipeline_from_sidebar()
if pipeline is None:
    st.stop()
calibration = None
if root is not None:
    with user_errors("The reference dataset cannot be read"):
        choice = calibrate_service.choose_calibration(pipeline, root)  # an unsound calibration is refused, with why
        calibration = choice.calibration
        for note in choice.notes:
            st.warning(plain(f"Calibration not used, {note}. Verdicts use the backbone's default thresholds "
                             "until the dataset's labels are fixed and it is calibrated again."))

picked: list[tuple[str, service.FaceView]] = []  # (photo content hash, chosen face)
given = 0  # photos given, usable or not: after a refused photo, "add the second photo" would be wrong
for n, column in enumerate(st.columns(2), 1):
    with column, user_errors(f"Photo {n}"):
        has_photo, face = pick_face(n, pipeline, root)
        given += has_photo
        if face is not None:
            picked.append(face)
chosen = [(f"Photo {n}", view) for n, (_, view) in enumerate(picked, 1)]

if len(chosen) == 2:
    (_, first), (_, second) = chosen
    with user_errors("Comparison failed"):
        verdict = service.compare(pipeline, first, second, calibration)
        memory = st.session_state.setdefault("vf_align_distances", {})
        views.show_verdict(verdict, calibration, root, service.alignment_change(memory, pipeline, picked, verdict.distance),
                           service.default_thresholds_note(pipeline))
        st.subheader("The pipeline, step by step")
        for n, (_, view) in enumerate(chosen, 1):
            views.show_steps(n, view, pipeline.backbone)
        views.show_barcodes(pipeline.backbone, first.embedding, second.embedding)
elif chosen and given < 2:
    st.info("Add the second photo to compare.")

show_calibration(pipeline, root, calibration)

if root is not None and chosen:
    if galleries().get(pipeline, root) is not None or st.button(f"Search {plain(root.name)} and map its embeddings",
                                                                key="vf_search"):
        with user_errors("Search failed"):
            found = load_gallery(pipeline, root)
            views.show_search(chosen, found, service.decision_metric(pipeline, calibration))
            views.show_map(chosen, found)
