"""Verify page: are two photos the same person? Every pipeline step shown, embeddings drawn as barcodes.

A thin view over ``core.verify_service``: this file only lays out widgets and charts.
Models load once per process (``pages.common``); each photo's faces and embeddings are
cached by the photo's content hash and the pipeline's settings, so a rerun that changes
nothing recomputes nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from core.compare.barcode import barcode_matrix, difference_barcode, shared_scale
from core.compare.calibration import Calibration, load_calibration
from core.compare.distances import METRICS
from core.compare.projection import TSNE_MIN_POINTS
from core.compare.verification import Verdict
from core.data.layout import scan, thumbnail
from core.images import IMAGE_EXTENSIONS, content_hash
from core.pipeline.backbones import BACKBONES, default_backbone
from core.pipeline.detection import DEFAULT_DETECTOR, DETECTORS
from core.pipeline.embeddings import Pipeline
from core.services import calibrate as calibrate_service
from core.services import gallery as gallery_service
from core.services import verify as service
from pages.common import (
    backbone,
    choose,
    dataset_picker,
    detector,
    ensure_app_navigation,
    progress_callback,
    user_errors,
)

ensure_app_navigation()

SOURCES = ("Upload", "Webcam", "From the dataset")
THUMB = 96
METRIC_NAMES = {"cosine": "cosine", "euclidean": "euclidean", "euclidean_l2": "euclidean (L2-normalised)"}


# --- settings --------------------------------------------------------------------------------------------


def pipeline_from_sidebar() -> tuple[Pipeline | None, Path | None]:
    with st.sidebar:
        st.header("Pipeline")
        detector_name = choose("detector", DETECTORS, DEFAULT_DETECTOR, "vf_detector")
        backbone_name = choose("backbone", BACKBONES, default_backbone(), "vf_backbone")
        align = st.toggle("Align faces (level the eyes)", value=True, key="vf_align",
                          help="Switch off to see how much the distance depends on alignment.")
        st.header("Reference dataset")
        root = dataset_picker("Dataset for calibration, search and photos", key="vf_dataset")
    if detector_name is None or backbone_name is None:
        return None, root
    with user_errors("Could not load the models"):
        pipeline = Pipeline(detector(detector_name), backbone(backbone_name), align=align)
        st.sidebar.caption(f"Weights loaded: {pipeline.backbone.name} ({pipeline.backbone.weights_id}), "
                           f"{pipeline.backbone.embedding_dim}-number embeddings.")
        return pipeline, root
    return None, root


# --- photos ----------------------------------------------------------------------------------------------


@st.cache_data(max_entries=32, show_spinner="Finding and embedding the faces…")
def analyse(digest: str, name: str, pipeline_key: str, _pipeline: Pipeline,
            _data: bytes) -> tuple[Any, ValueError | None]:
    """(PhotoAnalysis, None), or (None, why the photo cannot be used); cached per photo bytes and pipeline,
    failures included, so a photo without a face is not searched again on every rerun."""
    try:
        return service.analyse_photo(_pipeline, _data, name, with_steps=True), None
    except ValueError as exc:  # ImageError and NoFaceError included
        return None, exc


def photo_from_dataset(root: Path | None, n: int) -> tuple[str, bytes] | None:
    if root is None:
        st.info("Pick a dataset in the sidebar first.")
        return None
    records = [r for r in scan(root).images if r.person is not None]
    people = sorted({r.person for r in records})
    if not people:
        st.warning("This dataset has no labelled photo.")
        return None
    person = st.selectbox("Person", people, key=f"vf_person{n}", index=min(n - 1, len(people) - 1))
    files = [r for r in records if r.person == person]
    record = st.selectbox("Photo", files, key=f"vf_file{n}", format_func=lambda r: f"{r.split}/{r.path.name}")
    return f"{person}/{record.path.name}", record.path.read_bytes()


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


def pick_face(n: int, pipeline: Pipeline, root: Path | None) -> tuple[str, Any] | None:
    """One column of the page: source, photo, faces; returns (the photo's content hash, the chosen FaceView)."""
    photo = photo_input(n, root)
    if photo is None:
        return None
    name, data = photo
    digest = content_hash(data)
    analysis, problem = analyse(digest, name, pipeline.key, pipeline, data)
    if isinstance(problem, service.NoFaceError):
        st.warning(str(problem))
        return None
    if problem is not None:
        st.error(f"Photo {n} cannot be used: {problem}")
        return None
    index = 0
    if len(analysis.faces) > 1:
        st.image(analysis.overview, caption=f"{len(analysis.faces)} faces found, numbered by size")
        index = st.selectbox("Which face?", range(len(analysis.faces)), key=f"vf_face{n}",
                             format_func=lambda i: f"face {i + 1}")
    return digest, analysis.faces[index]


def show_steps(n: int, view: Any) -> None:
    aligned = view.aligned
    rotation = (f"rotated {aligned.angle:+.1f}° so the eyes are level" if aligned.aligned
                else f"not rotated: {aligned.reason or 'alignment is off'}")
    columns = st.columns(4)
    captions = [f"1 · detected (score {view.face.score:.2f}), eyes marked", f"2 · {rotation}",
                f"3 · aligned crop {aligned.crop.shape[1]}×{aligned.crop.shape[0]}",
                "4 · network input (preprocessed, rescaled for display)"]
    for column, image, caption in zip(columns, (view.detected, view.eye_line, aligned.crop, view.network_input), captions):
        column.image(image, caption=f"Photo {n}: {caption}", width="stretch")


# --- verdict and barcodes ----------------------------------------------------------------------------------


def show_verdict(verdict: Verdict, calibration: Calibration | None, root: Path | None, change: float | None) -> None:
    chance = f"{verdict.confidence:.0%} probability of the same person"
    if verdict.verified:
        st.success(f"**Same person** — {chance}.")
    else:
        st.warning(f"**Different people** — {chance}.")
    metric = METRIC_NAMES[verdict.metric]
    columns = st.columns(3)
    columns[0].metric(f"{metric} distance", f"{verdict.distance:.4f}",
                      delta=None if change is None else f"{change:+.4f} vs alignment switched the other way",
                      delta_color="inverse")
    columns[1].metric("Threshold", f"{verdict.threshold:.4f}", help="Distances at or below it are the same person.")
    columns[2].metric("P(same person)", f"{verdict.confidence:.0%}")
    if calibration is None:
        where = f"on {root.name}" if root is not None else "on a labelled dataset"
        st.info(f"These thresholds are **defaults** for this backbone, not calibrated on your photos. "
                f"Calibrate them {where} in the *Calibration* section below.")
    else:
        st.caption(f"Thresholds calibrated on {root.name if root else 'the reference dataset'} "
                   f"({calibration.n_people} people, {calibration.n_genuine} genuine and {calibration.n_impostor} "
                   f"impostor pairs, {calibration.created}).")
    rows = [{"metric": METRIC_NAMES[m], "distance": round(verdict.distances[m], 4),
             "threshold": round(verdict.thresholds[m], 4),
             "same person?": "yes" if verdict.distances[m] <= verdict.thresholds[m] else "no"} for m in METRICS]
    st.dataframe(rows, hide_index=True)


def barcode_figure(matrix: np.ndarray, title: str, low: float, high: float, colorscale: str) -> go.Figure:
    figure = go.Figure(go.Heatmap(
        z=matrix, zmin=low, zmax=high, colorscale=colorscale,
        hovertemplate="slot %{x}<br>value %{z:.4f}<extra></extra>"))
    figure.update_layout(title=title, height=170, margin={"l": 10, "r": 10, "t": 40, "b": 30})
    figure.update_yaxes(showticklabels=False)
    figure.update_xaxes(title_text="embedding slot")
    return figure


def show_barcodes(e1: np.ndarray, e2: np.ndarray) -> None:
    st.subheader("Embeddings as barcodes")
    st.caption(f"Each {e1.size}-number embedding is drawn as one stripe per number and repeated as rows, like a "
               "barcode: every row carries the same information, the height only makes it visible. Two photos of "
               "one person should give similar stripes; the third barcode is bright where they differ.")
    low, high = shared_scale(e1, e2)
    for i, vector in enumerate((e1, e2), 1):
        st.plotly_chart(barcode_figure(barcode_matrix(vector), f"Photo {i}", low, high, "RdBu"), key=f"vf_barcode{i}")
    difference = difference_barcode(e1, e2)
    st.plotly_chart(barcode_figure(difference, "|photo 1 − photo 2|", 0.0, max(float(difference.max()), 1e-9),
                                   "Viridis"), key="vf_barcode_diff")


# --- calibration ------------------------------------------------------------------------------------------


GALLERIES_KEPT = 4


@st.cache_resource
def galleries() -> dict[tuple[str, str, str], gallery_service.Gallery]:
    """Dataset embeddings shared by every session, per dataset version and pipeline (oldest dropped first).

    A plain shared dict rather than a cached function, because embedding a dataset drives a progress
    bar that a cached function could not replay.
    """
    return {}


def load_gallery(pipeline: Pipeline, root: Path) -> gallery_service.Gallery:
    store = galleries()
    key = gallery_key(pipeline, root)
    if key not in store:
        bar = st.progress(0.0, text="Embedding the dataset…")
        built = gallery_service.build_gallery(pipeline, root, progress=progress_callback(bar, "Embedding the dataset"))
        bar.empty()
        while len(store) >= GALLERIES_KEPT:
            store.pop(next(iter(store)), None)
        store[key] = built
    result = store[key]
    if result.no_face:
        st.caption(f"{len(result.no_face)} photo(s) without a detected face were left out: "
                   + ", ".join(result.no_face[:10]) + (" …" if len(result.no_face) > 10 else ""))
    return result


def gallery_key(pipeline: Pipeline, root: Path) -> tuple[str, str, str]:
    return str(root), calibrate_service.dataset_fingerprint(root), pipeline.key


def gallery_ready(pipeline: Pipeline, root: Path) -> bool:
    """Whether this dataset is already embedded with this pipeline (then search and map need no button)."""
    return gallery_key(pipeline, root) in galleries()


def calibration_figures(calibration: Calibration, metric: str) -> tuple[go.Figure, go.Figure]:
    m = calibration.metrics[metric]
    edges = np.asarray(m.histogram_edges)
    centres, width = (edges[:-1] + edges[1:]) / 2, np.diff(edges)
    histogram = go.Figure([
        go.Bar(x=centres, y=np.asarray(m.genuine_counts) / max(1, calibration.n_genuine), width=width,
               name=f"same person ({calibration.n_genuine} pairs)", opacity=0.6),
        go.Bar(x=centres, y=np.asarray(m.impostor_counts) / max(1, calibration.n_impostor), width=width,
               name=f"different people ({calibration.n_impostor} pairs)", opacity=0.6),
    ])
    histogram.add_vline(x=m.threshold, line_dash="dash", annotation_text=f"threshold {m.threshold:.3f}")
    histogram.update_layout(barmode="overlay", title=f"{METRIC_NAMES[metric]} distances",
                            xaxis_title="distance", yaxis_title="share of pairs")
    roc = go.Figure(go.Scatter(x=m.roc_far, y=m.roc_tar, mode="lines", name=f"ROC (AUC {m.auc:.4f})"))
    roc.add_trace(go.Scatter(x=[m.eer], y=[1 - m.eer], mode="markers", name=f"EER {m.eer:.2%}",
                             marker={"size": 10}))
    roc.add_trace(go.Scatter(x=[m.far], y=[m.tar], mode="markers", name="chosen threshold",
                             marker={"size": 10, "symbol": "x"}))
    roc.update_layout(title=f"ROC curve — AUC {m.auc:.4f}", xaxis_title="false-accept rate",
                      yaxis_title="true-accept rate", xaxis_range=[0, 1], yaxis_range=[0, 1.02])
    return histogram, roc


def show_calibration(pipeline: Pipeline, root: Path | None, calibration: Calibration | None) -> Calibration | None:
    st.subheader("Calibration")
    st.caption("Thresholds are learnt, not copied: all pairs of photos of the same person (genuine) and a sample "
               "of pairs of different people (impostors) from the reference dataset give the ROC curve; the "
               "threshold sits at the equal-error rate, or at a false-accept rate you choose.")
    if root is None:
        st.info("Pick a reference dataset in the sidebar to calibrate.")
        return calibration
    rule = st.radio("Threshold at", ["equal-error rate", "target false-accept rate"], horizontal=True, key="vf_rule")
    target = None
    if rule == "target false-accept rate":
        target = st.number_input("Target false-accept rate", 0.0, 1.0, 0.01, 0.005, format="%.3f", key="vf_far")
    if st.button(f"Calibrate on {root.name}", key="vf_calibrate"):
        with user_errors("Calibration failed"):
            calibrate_service.calibrate_gallery(pipeline, load_gallery(pipeline, root), target)
            st.rerun()  # the verdict above is drawn before this button: redraw it with the new thresholds
    if calibration is None:
        return None
    metric = st.selectbox("Metric", METRICS, index=METRICS.index(calibration.metric), key="vf_cal_metric",
                          format_func=METRIC_NAMES.get)
    chosen = calibration.metrics[metric]
    columns = st.columns(4)
    columns[0].metric("AUC", f"{chosen.auc:.4f}")
    columns[1].metric("EER", f"{chosen.eer:.2%}")
    columns[2].metric("Threshold", f"{chosen.threshold:.4f}")
    columns[3].metric("Pairs", f"{calibration.n_genuine} + {calibration.n_impostor}",
                      help="genuine + impostor pairs")
    histogram, roc = calibration_figures(calibration, metric)
    left, right = st.columns(2)
    left.plotly_chart(histogram, key="vf_histogram")
    right.plotly_chart(roc, key="vf_roc")
    return calibration


# --- identification and map -------------------------------------------------------------------------------


def show_search(faces: list[tuple[str, Any]], found: gallery_service.Gallery, metric: str) -> None:
    st.subheader("Who is this?")
    st.caption(f"The nearest people in {found.root.name} ({METRIC_NAMES[metric]} distance, each person at their "
               "closest photo).")
    for label, view in faces:
        st.markdown(f"**{label}**")
        columns = st.columns(5)
        for column, match in zip(columns, gallery_service.identify(found, view.embedding, metric)):
            with user_errors(match.path.name):
                column.image(thumbnail(match.path, THUMB), width=THUMB)
            column.caption(f"{match.person}\n\n{match.distance:.4f}")


@st.cache_data(max_entries=8, show_spinner="Projecting the embeddings…")
def projection(key: str, method: str, _found: gallery_service.Gallery, _extra: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    return gallery_service.embedding_map(_found, _extra, method)


def show_map(faces: list[tuple[str, Any]], found: gallery_service.Gallery, pipeline: Pipeline) -> None:
    st.subheader("Embedding map")
    method = st.radio("Projection", ["pca", "tsne"], horizontal=True, key="vf_projection",
                      format_func={"pca": "PCA (instant)", "tsne": "t-SNE (slower, keeps neighbours)"}.get)
    if method == "tsne" and len(found.labels) + len(faces) < TSNE_MIN_POINTS:
        st.warning(f"t-SNE needs at least {TSNE_MIN_POINTS} faces.")
        return
    extra = [view.embedding for _, view in faces]
    key = "|".join([str(found.root), found.fingerprint, pipeline.key,
                    *(content_hash(e.tobytes()) for e in extra)])
    points, marked = projection(key, method, found, extra)
    figure = go.Figure()
    labels = np.asarray(found.labels)
    for person in sorted(set(found.labels)):
        mask = labels == person
        figure.add_trace(go.Scatter(x=points[mask, 0], y=points[mask, 1], mode="markers", name=person,
                                    text=[p.name for p, m in zip(found.paths, mask) if m],
                                    hovertemplate="%{text}<extra>" + person + "</extra>"))
    for (label, _), point in zip(faces, marked):
        figure.add_trace(go.Scatter(x=[point[0]], y=[point[1]], mode="markers+text", name=label, text=[label],
                                    textposition="top center", marker={"size": 18, "symbol": "star",
                                                                       "line": {"width": 1, "color": "black"}}))
    figure.update_layout(title=f"{found.root.name}: one point per photo, coloured by person ({method.upper()})",
                         height=520)
    st.plotly_chart(figure, key="vf_map")


# --- page -------------------------------------------------------------------------------------------------


def distance_change(pipeline: Pipeline, faces: list[tuple[str, Any]], distance: float) -> float | None:
    """How much the deciding distance differs from when alignment was last switched the other way for these faces."""
    keys = (pipeline.detector.cache_key(), pipeline.backbone.cache_key(),
            *((digest, view.face.box) for digest, view in faces))
    seen = st.session_state.setdefault("vf_align_distances", {}).setdefault(keys, {})
    align = pipeline.align
    seen[align] = distance
    return None if (not align) not in seen else distance - seen[not align]


def calibration_for(pipeline: Pipeline, root: Path | None) -> Calibration | None:
    if root is None:
        return None
    return load_calibration(calibrate_service.calibration_context(pipeline, calibrate_service.dataset_fingerprint(root)))


st.title("Verify")
st.caption("Are two photos the same person? Each photo goes detect → align → represent; the two embeddings are "
           "compared by distance against a calibrated threshold.")

pipeline, root = pipeline_from_sidebar()
if pipeline is None:
    st.stop()
with user_errors("The reference dataset cannot be read"):
    calibration = calibration_for(pipeline, root)

picked: list[tuple[str, Any]] = []  # (photo content hash, chosen face)
for n, column in enumerate(st.columns(2), 1):
    with column, user_errors(f"Photo {n}"):
        face = pick_face(n, pipeline, root)
        if face is not None:
            picked.append(face)
chosen = [(f"Photo {n}", view) for n, (_, view) in enumerate(picked, 1)]

if len(chosen) == 2:
    (_, first), (_, second) = chosen
    with user_errors("Comparison failed"):
        verdict = service.compare(pipeline, first, second, calibration)
        show_verdict(verdict, calibration, root, distance_change(pipeline, picked, verdict.distance))
        st.subheader("The pipeline, step by step")
        for n, (_, view) in enumerate(chosen, 1):
            show_steps(n, view)
        show_barcodes(first.embedding, second.embedding)
elif chosen:
    st.info("Add the second photo to compare.")

calibration = show_calibration(pipeline, root, calibration)

if root is not None and chosen:
    if gallery_ready(pipeline, root) or st.button(f"Search {root.name} and map its embeddings", key="vf_search"):
        with user_errors("Search failed"):
            found = load_gallery(pipeline, root)
            show_search(chosen, found, calibration.metric if calibration else pipeline.backbone.decision_metric)
            show_map(chosen, found, pipeline)
