"""The Verify page's larger views: pipeline steps, verdict, barcodes, calibration charts, 1:N search and the map.

Only widgets and plotly styling live here; the numbers come from ``core.services``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from core.compare.calibration import Calibration
from core.compare.distances import METRICS
from core.compare.verification import Verdict
from core.data.layout import thumbnail
from core.pipeline.alignment import ROTATION_OFF
from core.pipeline.backbones.base import Backbone
from core.services import calibrate as calibrate_service
from core.services import gallery as gallery_service
from core.services import verify as service
from pages.common import chart_text, plain, user_errors
from pages.components.layout import metric_row

THUMB = 96
GENUINE_COLOUR, IMPOSTOR_COLOUR = "#2ca02c", "#ff7f0e"  # green and orange: never two blues side by side
METRIC_NAMES = {"cosine": "cosine", "euclidean": "euclidean", "euclidean_l2": "euclidean (L2-normalised)"}

Faces = list[tuple[str, service.FaceView]]  # (label shown, face)


def show_steps(n: int, view: service.FaceView, backbone: Backbone) -> None:
    """Four pictures of one face: detected, rotated, the crop as a photo, the numbers the network receives."""
    aligned = view.aligned
    if aligned.aligned:
        rotation = f"rotated {aligned.angle:+.1f}° so the eyes are level"
    elif aligned.reason == ROTATION_OFF:
        rotation = ROTATION_OFF  # the switch, not the face, decided: say the crop is still the aligned one
    else:
        rotation = f"not rotated: {aligned.reason}"
    columns = st.columns(4)
    side = f"{aligned.crop.shape[1]}×{aligned.crop.shape[0]}"
    captions = [f"1 · detected (score {view.face.score:.2f}), eyes marked", f"2 · {rotation}",
                f"3 · aligned crop {side}, as a photo",
                f"4 · network input {side}: {backbone.input_description}, one map per channel "
                f"({', '.join(backbone.input_channels)}); white 0, blue below, red above"]
    for column, image, caption in zip(columns, (view.detected, view.eye_line, aligned.crop, view.network_input), captions):
        column.image(image, caption=f"Photo {n}: {caption}", width="stretch")


def show_verdict(verdict: Verdict, calibration: Calibration | None, root: Path | None, change: float | None,
                 defaults_note: str | None = None) -> None:
    """The answer, its distance against the threshold, where the threshold came from, and every metric.

    ``defaults_note`` says where uncalibrated thresholds come from when they are not the backbone's declared ones
    (a fine-tuned run's own validation pairs).
    """
    chance = f"{verdict.confidence:.0%} probability of the same person"
    if service.same_photo(verdict.distance):
        st.info("Both faces are the same photo (distance 0): the verdict says nothing about two photos of one person.")
    if verdict.verified:
        st.success(f"**Same person** — {chance}.")
    else:
        st.warning(f"**Different people** — {chance}.")
    metric = METRIC_NAMES[verdict.metric]
    distance = f"{metric} distance"
    metric_row([(distance, f"{verdict.distance:.4f}"), ("Threshold", f"{verdict.threshold:.4f}"),
                ("P(same person)", f"{verdict.confidence:.0%}")],
               {distance: {"delta": None if change is None else f"{change:+.4f} vs alignment switched the other way",
                           "delta_color": "inverse"},
                "Threshold": {"help": "Distances at or below it are the same person."}})
    if calibration is None:
        where = f"on {plain(root.name)}" if root is not None else "on a labelled dataset"
        source = ("are **defaults** for this backbone, not calibrated" if defaults_note is None
                  else f"come from {plain(defaults_note)}, not from a calibration")
        st.info(f"These thresholds {source} on your photos. Calibrate them {where} in the *Calibration* section below.")
    else:
        st.caption(plain(f"Thresholds calibrated on {root.name if root else 'the reference dataset'} "
                         f"({calibration.n_people} people, {calibration.n_genuine} genuine and "
                         f"{calibration.n_impostor} impostor pairs, {calibration.created}); it {calibration.decision}."))
    rows = [{"metric": METRIC_NAMES[check.metric], "distance": round(check.distance, 4),
             "threshold": round(check.threshold, 4), "same person?": "yes" if check.same else "no"}
            for check in service.metric_checks(verdict)]
    st.dataframe(rows, hide_index=True)


def barcode_figure(matrix: np.ndarray, title: str, scale: tuple[float, float], colorscale: str,
                   unit: str = "value") -> go.Figure:
    """One barcode as a heatmap on a fixed colour range with its colour bar; hovering a stripe gives its slot and value."""
    low, high = scale
    figure = go.Figure(go.Heatmap(
        z=matrix, zmin=low, zmax=high, zauto=False, colorscale=colorscale, showscale=True,
        colorbar={"title": {"text": unit, "side": "right"}, "thickness": 12, "len": 1.0},
        hovertemplate=f"slot %{{x}}<br>{unit} %{{z:.4f}}<extra></extra>"))
    figure.update_layout(title=title, height=170, margin={"l": 10, "r": 10, "t": 40, "b": 30})
    figure.update_yaxes(showticklabels=False)
    figure.update_xaxes(title_text="embedding slot")
    return figure


def show_barcodes(backbone: Backbone, e1: np.ndarray, e2: np.ndarray) -> None:
    """Both embeddings as barcodes on the backbone's fixed colour range, then their difference on its own fixed range."""
    st.subheader("Embeddings as barcodes")
    drawn = service.barcodes(backbone, e1, e2)
    low, high = drawn.scale.value_range
    where = ("measured on real photos" if not drawn.scale.normalised
             else "each vector divided by its length first: no measured range for this backbone")
    st.caption(f"Each {e1.size}-number embedding is drawn as one stripe per number and repeated as rows, like a "
               "barcode: every row carries the same information, the height only makes it visible. Colours are "
               f"fixed for {backbone.name} ({where}): {drawn.unit} {low:.2f} to {high:+.2f}, and the difference 0 to "
               f"{drawn.scale.difference_limit:.2f}, so a photo looks the same in every comparison. Two photos of one "
               "person give similar stripes and a dark difference; different people a bright one.")
    for i, matrix in enumerate((drawn.first, drawn.second), 1):
        st.plotly_chart(barcode_figure(matrix, f"Photo {i}", drawn.scale.value_range, "RdBu_r", drawn.unit),
                        key=f"vf_barcode{i}")
    st.plotly_chart(barcode_figure(drawn.difference, "|photo 1 − photo 2|", drawn.scale.difference_range, "Inferno",
                                   "|difference|"), key="vf_barcode_diff")


def calibration_figures(calibration: Calibration, metric: str) -> tuple[go.Figure, go.Figure]:
    """The genuine and impostor distance histograms, and the ROC curve with its EER and chosen threshold."""
    curves = calibrate_service.calibration_curves(calibration, metric)
    histogram = go.Figure([
        go.Bar(x=curves.centres, y=curves.genuine_share, width=curves.widths, marker_color=GENUINE_COLOUR,
               name=f"same person ({calibration.n_genuine} pairs)", opacity=0.6),
        go.Bar(x=curves.centres, y=curves.impostor_share, width=curves.widths, marker_color=IMPOSTOR_COLOUR,
               name=f"different people ({calibration.n_impostor} pairs)", opacity=0.6),
    ])
    histogram.add_vline(x=curves.threshold, line_dash="dash", annotation_text=f"threshold {curves.threshold:.3f}")
    histogram.update_layout(barmode="overlay", title=f"{METRIC_NAMES[metric]} distances", showlegend=True,
                            xaxis_title="distance", yaxis_title="share of pairs",
                            legend={"orientation": "h", "yanchor": "top", "y": -0.22, "x": 0})
    roc = go.Figure(go.Scatter(x=curves.roc_far, y=curves.roc_tar, mode="lines", name=f"ROC (AUC {curves.auc:.4f})"))
    (eer_far, eer_tar), (far, tar) = curves.eer_point, curves.chosen_point
    roc.add_trace(go.Scatter(x=[eer_far], y=[eer_tar], mode="markers", name=f"EER {eer_far:.2%}",
                             marker={"size": 10}))
    roc.add_trace(go.Scatter(x=[far], y=[tar], mode="markers", name="chosen threshold",
                             marker={"size": 10, "symbol": "x"}))
    roc.update_layout(title=f"ROC curve — AUC {curves.auc:.4f}", xaxis_title="false-accept rate",
                      yaxis_title="true-accept rate", xaxis_range=[0, 1], yaxis_range=[0, 1.02])
    return histogram, roc


def show_calibration_charts(calibration: Calibration) -> None:
    """One metric of a calibration (the deciding one first): its key numbers, histograms and ROC curve."""
    st.markdown(f"**This calibration {plain(calibration.decision)}.**")
    metric = st.selectbox("Metric", METRICS, index=METRICS.index(calibration.metric), key="vf_cal_metric",
                          format_func=METRIC_NAMES.get)
    chosen = calibration.metrics[metric]
    metric_row([("AUC", f"{chosen.auc:.4f}"), ("EER", f"{chosen.eer:.2%}"), ("Threshold", f"{chosen.threshold:.4f}"),
                ("Pairs", f"{calibration.n_genuine} + {calibration.n_impostor}")],
               {"Pairs": {"help": "genuine + impostor pairs"}})
    histogram, roc = calibration_figures(calibration, metric)
    left, right = st.columns(2)
    left.plotly_chart(histogram, key="vf_histogram")
    right.plotly_chart(roc, key="vf_roc")


def show_search(faces: Faces, found: gallery_service.Gallery, metric: str) -> None:
    """The five nearest people to each compared face, with their closest photo."""
    st.subheader("Who is this?")
    st.caption(plain(f"The nearest people in {found.root.name} ({METRIC_NAMES[metric]} distance, each person at "
                     "their closest photo)."))
    for label, view in faces:
        st.markdown(f"**{label}**")
        columns = st.columns(5)
        for column, match in zip(columns, gallery_service.search(found, view.embedding, metric)):
            with user_errors(match.path.name):
                column.image(thumbnail(match.path, THUMB), width=THUMB)
            note = "\n\nthis photo itself is in the gallery" if service.same_photo(match.distance) else ""
            column.caption(f"{plain(match.person)}\n\n{match.distance:.4f}{note}")


@st.cache_data(max_entries=8, show_spinner="Projecting the embeddings…")
def projection(key: str, method: str, _found: gallery_service.Gallery,
               _extra: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Cached by ``key`` (see ``projection_key``): t-SNE takes seconds to minutes and the page reruns on every click."""
    return gallery_service.embedding_map(_found, _extra, method)


def show_map(faces: Faces, found: gallery_service.Gallery) -> None:
    """The dataset's embeddings in 2-D, one colour per person, the compared faces as stars."""
    st.subheader("Embedding map")
    method = st.radio("Projection", ["pca", "tsne"], horizontal=True, key="vf_projection",
                      format_func={"pca": "PCA (instant)", "tsne": "t-SNE (slower, keeps neighbours)"}.get)
    problem = gallery_service.projection_problem(found, len(faces), method)
    if problem is not None:
        st.warning(problem)
        return
    eta = gallery_service.projection_eta(found, len(faces), method)
    if eta is not None:
        st.info(eta)
    extra = [view.embedding for _, view in faces]
    points, marked = projection(gallery_service.projection_key(found, extra), method, found, extra)
    figure = go.Figure()
    for group in gallery_service.points_by_person(found, points):
        figure.add_trace(go.Scatter(x=group.points[:, 0], y=group.points[:, 1], mode="markers",
                                    name=chart_text(group.person), text=[chart_text(n) for n in group.names],
                                    hovertemplate="%{text}<extra>%{fullData.name}</extra>"))
    for (label, _), point in zip(faces, marked):
        figure.add_trace(go.Scatter(x=[point[0]], y=[point[1]], mode="markers+text", name=label, text=[label],
                                    textposition="top center", marker={"size": 18, "symbol": "star",
                                                                       "line": {"width": 1, "color": "black"}}))
    figure.update_layout(title=f"{chart_text(found.root.name)}: one point per photo, coloured by person ({method.upper()})",
                         height=520)
    st.plotly_chart(figure, key="vf_map")
