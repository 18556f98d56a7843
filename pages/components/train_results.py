"""The Train page's charts and results: learning curves, the finished run's metrics, mistakes and skipped photos."""

from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core.data.layout import thumbnail
from core.services.train import Mistake, Report, TrainOutcome
from pages.common import chart_text, plain

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


def show_mistakes(mistakes: list[Mistake]) -> None:
    st.subheader(f"Misclassified validation photos ({len(mistakes)})")
    if not mistakes:
        st.success("Every validation photo with a face was named right.")
        return
    columns = st.columns(6)
    for i, mistake in enumerate(mistakes):
        with columns[i % 6]:
            caption = f"{mistake.truth} → {mistake.predicted} ({mistake.confidence:.0%})"
            try:
                st.image(thumbnail(mistake.path, THUMB), caption=plain(caption))
            except ValueError as exc:
                st.warning(plain(f"{caption}: {exc}"))


def show_outcome(outcome: TrainOutcome) -> None:
    """The finished run: what was saved, its scores, curves, confusion matrix, mistakes and skipped photos."""
    info, result = outcome.info, outcome.result
    status = "stopped by you, the best model so far was kept" if result.stopped else "complete"
    st.success(f"Saved run **{plain(info.name)}** — {status}: {result.epochs_run} epoch(s) in {result.seconds:.1f} s, "
               f"kept epoch {result.best_epoch + 1}.")
    columns = st.columns(4)
    columns[0].metric("Validation accuracy", percent(info.val_accuracy))
    columns[1].metric("Test accuracy", percent(info.test_accuracy))
    columns[2].metric("People", info.people)
    columns[3].metric("Epochs", result.epochs_run)
    for warning in [*result.warnings, *outcome.notes]:
        st.warning(plain(warning))
    show_curves(result.history, "tr_final", result.best_epoch)
    if result.metrics is None:
        st.info("The dataset has no validation photos of the people in train, so there are no validation metrics.")
    else:
        left, right = st.columns([2, 3])
        with left:
            st.subheader("Per person (validation)")
            st.dataframe(per_person_table(result.metrics), hide_index=True, width="stretch",
                         column_config={c: st.column_config.NumberColumn(c, format="percent")
                                        for c in ("precision", "recall", "F1")})
        right.plotly_chart(confusion_figure(result.metrics), key="tr_confusion")
        show_mistakes(outcome.mistakes)
    skipped = skipped_table(outcome.report)
    st.subheader(f"Photos not used as they are ({len(skipped)})")
    if skipped.empty:
        st.caption("Every photo was readable and held exactly one face.")
    else:
        st.dataframe(skipped, hide_index=True, width="stretch")
