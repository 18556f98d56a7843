"""The Train page's charts and results: learning curves, and a run's report (metrics, confusion matrix, mistakes,
skipped photos, time in parts) read back from the run store: the same view right after training and from the
runs table after a reload."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core.data.layout import thumbnail
from core.runs import RunReport
from core.services.train import Report, timing_summary
from pages.common import chart_text, plain
from pages.components.layout import metric_row

THUMB = 120


def curves(history: dict[str, list[float]], best_epoch: int | None = None) -> tuple[go.Figure, go.Figure]:
    """Loss and accuracy per epoch, train and validation, 1-based epochs; the kept epoch marked when known."""
    figures = []
    for metric, title in (("loss", "Loss"), ("accuracy", "Accuracy")):
        figure = go.Figure()
        for key, label in ((metric, "train"), (f"val_{metric}", "validation")):
            if history.get(key):
                values = history[key]
                figure.add_trace(go.Scatter(x=list(range(1, len(values) + 1)), y=values, mode="lines+markers",
                                            name=label, marker={"size": 4}))
        if best_epoch is not None:
            figure.add_vline(x=best_epoch + 1, line_dash="dot", annotation_text="kept")
        figure.update_layout(title=title, xaxis_title="epoch", yaxis_title=metric, height=320,
                             margin={"l": 40, "r": 10, "t": 40, "b": 40}, legend={"orientation": "h", "y": -0.25})
        if metric == "accuracy":
            figure.update_yaxes(range=[0, 1.02], tickformat=".0%")
        figures.append(figure)
    return figures[0], figures[1]


def show_curves(history: dict[str, list[float]], key: str, best_epoch: int | None = None) -> None:
    loss, accuracy = curves(history, best_epoch)
    left, right = st.columns(2)
    left.plotly_chart(loss, key=f"{key}_loss")
    right.plotly_chart(accuracy, key=f"{key}_accuracy")


def percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def confusion_figure(metrics: dict[str, Any]) -> go.Figure:
    labels = [chart_text(label) for label in metrics["labels"]]
    figure = go.Figure(go.Heatmap(z=metrics["confusion"], x=labels, y=labels, colorscale="Blues",
                                  texttemplate="%{z}", hovertemplate="true %{y}<br>predicted %{x}: %{z}<extra></extra>"))
    figure.update_layout(title="Confusion matrix (validation)", xaxis_title="predicted", yaxis_title="true",
                         height=140 + 40 * len(labels), margin={"l": 10, "r": 10, "t": 40, "b": 10})
    figure.update_yaxes(autorange="reversed")
    return figure


def per_person_table(metrics: dict[str, Any]) -> pd.DataFrame:
    rows = [{"person": name, "precision": stats["precision"], "recall": stats["recall"], "F1": stats["f1"],
             "photos": stats["support"]} for name, stats in metrics["per_class"].items()]
    return pd.DataFrame(rows)


def skipped_table(report: Report) -> pd.DataFrame:
    rows = []
    for split, entry in report.items():
        rows += [{"split": split, "photo": photo, "what happened": "skipped: no face found"} for photo in entry["no_face"]]
        rows += [{"split": split, "photo": photo, "what happened": f"skipped: {error}"}
                 for photo, error in entry["errors"].items()]
        rows += [{"split": split, "photo": photo, "what happened": "several faces: the largest was used"}
                 for photo in entry["many_faces"]]
    return pd.DataFrame(rows, columns=["split", "photo", "what happened"])


def show_mistakes(report: RunReport) -> None:
    """The validation photos the run named wrongly, from the dataset's folder (a warning when a photo is gone)."""
    mistakes = report.mistakes
    if mistakes is None or not report.skipped.get("validation", {}).get("used"):
        st.subheader("Misclassified validation photos")
        st.info("Not listed for this run (its notes say why)." if mistakes is None
                else "The dataset has no validation photo with a face: there is nothing to list.")
        return
    st.subheader(f"Misclassified validation photos ({len(mistakes)})")
    if not mistakes:
        st.success("Every validation photo with a face was named right.")
        return
    columns = st.columns(6)
    for i, mistake in enumerate(mistakes):
        with columns[i % 6]:
            caption = f"{mistake['truth']} → {mistake['predicted']} ({mistake['confidence']:.0%})"
            try:
                st.image(thumbnail(Path(report.dataset) / mistake["photo"], THUMB), caption=plain(caption))
            except ValueError as exc:
                st.warning(plain(f"{caption}: {exc}"))


def time_line(report: RunReport) -> str:
    """The run's whole time with its parts; runs saved before timings were kept say only the training's."""
    info = report.info
    if info.timings:
        return f"{timing_summary(info.timings)}."
    return f"Training took {info.seconds:.1f} s (the time of the other steps was not recorded for this run)."


def show_report(report: RunReport, key: str) -> None:
    """A saved run's report: status and time, scores, curves, confusion matrix, mistakes and skipped photos.

    ``key`` prefixes the charts' keys, so the report of a run just trained and one reopened can share a page.
    """
    info = report.info
    status = "stopped by you, the best model so far was kept" if info.status == "stopped" else "complete"
    st.success(f"Saved run **{plain(info.name)}** — {status}: {info.epochs_run} epoch(s), kept epoch "
               f"{report.best_epoch + 1}. {time_line(report)}")
    metric_row([("Validation accuracy", percent(info.val_accuracy)), ("Test accuracy", percent(info.test_accuracy)),
                ("People", info.people), ("Epochs", info.epochs_run)])
    for warning in [*report.warnings, *report.notes]:
        st.warning(plain(warning))
    show_curves(report.history, f"{key}_curves", report.best_epoch)
    if report.validation is None:
        st.info("The dataset has no validation photos of the people in train, so there are no validation metrics.")
    else:
        left, right = st.columns([2, 3])
        with left:
            st.subheader("Per person (validation)")
            st.dataframe(per_person_table(report.validation), hide_index=True, width="stretch",
                         column_config={c: st.column_config.NumberColumn(c, format="percent")
                                        for c in ("precision", "recall", "F1")})
        right.plotly_chart(confusion_figure(report.validation), key=f"{key}_confusion")
        show_mistakes(report)
    skipped = skipped_table(report.skipped)
    st.subheader(f"Photos not used as they are ({len(skipped)})")
    if skipped.empty:
        st.caption("Every photo was readable and held exactly one face.")
    else:
        st.dataframe(skipped, hide_index=True, width="stretch")
