"""The Train page's runs section: every saved run in a table, and what can be done with one (reopen its report,
use, rename, download, delete). The chosen run is kept in the URL (``?run=``), so a reload comes back to it."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pandas as pd
import streamlit as st

from core import runs as run_store
from core.config import in_current_workspace
from core.pipeline.backbones import BACKBONES
from core.runs import RunInfo
from core.training.heads import HEADS, head_class
from pages.common import flash, user_errors
from pages.components.layout import wrapping_columns
from pages.components.train_results import show_report
from pages.components.url_state import keep_in_url, url_choice

RUN_PARAM = "run"


def created(info: RunInfo) -> str:
    try:
        return datetime.fromisoformat(info.created).astimezone().strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return info.created


def runs_frame(runs: list[RunInfo], active: str | None) -> pd.DataFrame:
    rows = []
    for info in runs:
        config = run_store.run_config(info)
        rows.append({"active": "★" if info.id == active else "", "name": info.name, "status": info.status,
                     "val accuracy": info.val_accuracy, "test accuracy": info.test_accuracy, "people": info.people,
                     "head": info.head, "detector": config.get("detector", "?"),
                     "backbone": config.get("backbone", "?"), "dataset": Path(config.get("dataset", "")).name,
                     "created": created(info), "epochs": info.epochs_run,
                     "seconds": round(info.timings.get("total", info.seconds), 1),
                     "id": info.id})
    return pd.DataFrame(rows)


def savedmodel_contents(info: RunInfo) -> str:
    """What the run's SavedModel export holds: a head's model on embeddings, or a fine-tuned run's whole network."""
    if head_class(info.head).mode != "finetune":
        return ("The SavedModel holds the head only: face embeddings (from the run's backbone) in, the probabilities "
                "(in the order of its labels.json) out.")
    backbone = run_store.run_config(info).get("backbone", "")
    entry = BACKBONES.entries().get(backbone)
    crops = f"{entry.factory.input_size}×{entry.factory.input_size}" if entry else "square"
    return (f"The SavedModel holds the whole fine-tuned {backbone or 'network'}: aligned {crops} face crops (uint8 RGB) "
            "in; the probabilities (in the order of its labels.json) and the face embedding out.")


ACTIONS_WIDTH = 260  # px: "Download SavedModel (zip)" whole; the three groups wrap at 800 px rather than cut it


@st.cache_data(max_entries=4, show_spinner=False)
def _zipped(folder: str, changed: tuple[int, ...], run_id: str) -> bytes:
    """The run's zip, made again only when its run.json or report.json changed (``folder`` names the workspace's)."""
    return run_store.export_run_zip(run_id)


def run_zip(info: RunInfo) -> bytes:
    files = (info.path / run_store.RUN_FILE, info.path / run_store.REPORT_FILE)
    return _zipped(str(info.path), tuple(f.stat().st_mtime_ns if f.exists() else 0 for f in files), info.id)


def run_actions(info: RunInfo, active: str | None) -> None:
    left, middle, right = wrapping_columns(3, ACTIONS_WIDTH)
    with left:
        if info.id == active:
            st.caption("This run is the one Predict and Verify use.")
        elif st.button("Use for Predict and Verify", key="tr_run_activate"):
            with user_errors("Could not choose the run"):
                run_store.set_active_run(info.id)
                flash("success", f"Predict and Verify now use '{info.name}'.")
                st.rerun()
        new_name = st.text_input("New name", key=f"tr_run_name_{info.id}", value=info.name)
        if st.button("Rename", key="tr_run_rename"):
            with user_errors("Could not rename"):
                renamed = run_store.rename_run(info.id, new_name)
                flash("success", f"Renamed to '{renamed.name}'.")
                st.rerun()
    with middle:
        # Bytes ready at render, not a deferred file: a rerun (a click's own, the live view's) dropped a deferred
        # file before the browser fetched it ("MediaFileStorageError: Deferred file … not found": nothing came);
        # the same bytes keep the same URL across reruns. on_click="ignore": a click reruns nothing.
        st.download_button("Download run (zip)", run_zip(info), file_name=f"facelab_run_{info.id}.zip",
                           mime="application/zip", key="tr_run_zip", on_click="ignore",
                           help="Every file of the run: model, labels, settings, history, metrics and report.")
        exportable = info.head in HEADS.entries() and head_class(info.head).savedmodel
        st.download_button("Download SavedModel (zip)",
                           in_current_workspace(lambda: run_store.export_savedmodel_zip(info.id)),
                           file_name=f"facelab_savedmodel_{info.id}.zip", mime="application/zip",
                           key="tr_run_savedmodel", disabled=not exportable, on_click="ignore",
                           help="A TensorFlow SavedModel, for use without FaceLab.")
        if exportable:
            st.caption(savedmodel_contents(info))
        else:
            st.caption(f"The '{info.head}' head has no Keras model on embeddings, so it cannot be exported as a "
                       "SavedModel; download the run as a zip instead.")
    with right:
        sure = st.checkbox("Yes, delete this run", key=f"tr_run_delete_ok_{info.id}")
        if st.button("Delete run", disabled=not sure, key="tr_run_delete"):
            with user_errors("Could not delete"):
                run_store.delete_run(info.id)
                flash("success", f"Deleted '{info.name}'.")
                st.rerun()


def runs_section() -> None:
    st.header("Runs")
    runs = run_store.list_runs()
    if not runs:
        st.info("No run yet: train one above.")
        return
    active = run_store.active_run()
    st.dataframe(runs_frame(runs, active), hide_index=True, width="stretch",
                 column_config={c: st.column_config.NumberColumn(c, format="percent")
                                for c in ("val accuracy", "test accuracy")})
    by_id = {info.id: info for info in runs}
    url_choice(RUN_PARAM, "tr_run_pick", {run_id: run_id for run_id in by_id})
    chosen = st.selectbox("Run", list(by_id), key="tr_run_pick",
                          format_func=lambda i: f"{by_id[i].name} · {created(by_id[i])} · {i}")
    keep_in_url(RUN_PARAM, chosen)
    if st.toggle("Show this run's report", key="tr_run_report",
                 help="Its curves, confusion matrix, scores, mistakes, skipped photos and time, as saved with it."):
        with user_errors("The run's report cannot be shown"):
            show_report(run_store.load_report(chosen), "tr_run_report")
    run_actions(by_id[chosen], active)
