"""Train page: pick a dataset and a pipeline, train a recogniser while watching it learn, manage the saved runs.

The page only draws. Training is a background job of the train service (``start_training``), kept
in ``st.session_state`` because a button click reruns the page script; a fragment polls the job's
snapshot every second to redraw the progress bar and the curves. The Stop button sits outside that
fragment, so a click never lands on a button being replaced. The face detector loads when Start
is pressed, not to draw the page (MTCNN loads TensorFlow): the estimate reads its class only.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from core.config import allow_server_paths
from core.pipeline import weights
from core.pipeline.backbones import BACKBONES, default_backbone
from core.pipeline.detection import DEFAULT_DETECTOR, DETECTORS
from core.pipeline.embeddings import Pipeline
from core.runs import check_run_name, load_report
from core.services.jobs import duration
from core.services.train import TrainJob, check_trainable, estimate, start_training
from core.training.config import TrainConfig
from core.training.heads import head_kinds
from pages.common import (
    backbone,
    choose,
    detector,
    ensure_app_navigation,
    flash,
    plain,
    session_workspace,
    show_flash,
    user_errors,
)
from pages.components.alignment import align_toggle
from pages.components.face_choice import face_choice_select
from pages.components.layout import wrapping_columns
from pages.components.train_results import show_curves, show_report
from pages.components.train_runs import runs_section
from pages.components.train_settings import hyper_parameters
from pages.components.url_state import kept_dataset_picker

ensure_app_navigation()

JOB = "tr_job"
SETTINGS_WIDTH = 360  # px: a settings column
STOP_ENABLED = "tr_stop_enabled"  # whether the page last drew Stop enabled (the fragment redraws the page when that changes)
MODE_LABELS = {"head": "Head on face embeddings (fast)", "finetune": "Fine-tune the face model end to end (slow)"}


# --- settings --------------------------------------------------------------------------------------


def weights_panel(backbone_name: str) -> None:
    """Ways to get a backbone's declared weights: download them, or install a file already on the server."""
    files = [f for f in weights.files_for(backbone_name) if f.url]
    if not files:
        return
    model = files[0].model or backbone_name
    with st.expander(f"Get the {model} weights"):
        st.write(f"The weights (about {files[0].size_hint / 1e6:.0f} MB) are downloaded into FaceLab's weights folder "
                 "and checked before use.")
        if st.button("Download the weights", key="tr_weights_download"):
            bar = st.progress(0.0, text="Downloading…")

            def report(done: int, total: int) -> None:
                bar.progress(min(1.0, done / max(total, 1)), text=f"Downloading {done / 1e6:.0f} / {total / 1e6:.0f} MB")

            with user_errors("Download failed"):
                path = weights.download(backbone_name, progress=report)
                flash("success", f"Installed {path.name}; {model} is ready.")
                st.rerun()
        if allow_server_paths():
            local = st.text_input("Or use a weights file on the server", key="tr_weights_path",
                                  placeholder=f"/data/{files[0].name}").strip()
            if st.button("Use this file", disabled=not local, key="tr_weights_install"):
                with user_errors("Could not use the file"):
                    path = weights.install_local(local)
                    flash("success", f"Installed {path.name}; {model} is ready.")
                    st.rerun()
        else:
            st.caption("Using a weights file already on the server is up to the server's owner.")


def choose_backbone() -> tuple[str, str | None]:
    """The chosen backbone and, when it cannot be used, why. Unusable ones stay listed, marked, with the reason."""
    entries = BACKBONES.entries()
    reasons = {name: entry.available() for name, entry in entries.items()}
    names = list(entries)
    default = default_backbone()
    name = st.selectbox("Face model (backbone)", names, index=names.index(default) if default in names else 0,
                        key="tr_backbone",
                        format_func=lambda n: entries[n].label + (" — unavailable" if reasons[n] else ""))
    st.caption(entries[name].description)
    for other, reason in reasons.items():
        if reason:
            st.caption(f"{entries[other].label} is unavailable: {reason}")
    for other, reason in reasons.items():
        if reason:
            weights_panel(other)
    return name, reasons[name]


def fine_tunable(backbone_name: str) -> bool:
    """Whether the backbone's class supports end-to-end fine-tuning (read without loading the model)."""
    return BACKBONES.entry(backbone_name).factory.fine_tunable


def show_estimate(root: Path, detector_name: str, backbone_name: str, align: bool, config: TrainConfig,
                  face_choice: str) -> None:
    """The service's estimate of the run's length, from this server's measured speed and the embedding cache."""
    with st.spinner("Checking which photos are already embedded…"):
        found = estimate(root, detector_name, backbone_name, align, config, face_choice)
    how = ("Rough: nothing was measured on this server yet, so this uses the models' declared costs; the first "
           "training measures it." if found.rough else "From the speed measured on this server.")
    st.info(f"Estimated time: about **{duration(found.seconds)}** — {plain(found.details)}. {how} Early stopping "
            "often ends training sooner.")


def settings_and_start() -> None:
    job = st.session_state.get(JOB)
    busy = job is not None and job.running
    left, right = wrapping_columns(2, SETTINGS_WIDTH)  # stacked at 800 px, where halves would cut the labels
    with left:
        root = kept_dataset_picker("Dataset", key="tr_dataset", param="dataset")
        detector_name = choose("face detector", DETECTORS, DEFAULT_DETECTOR, "tr_detector")
        align = align_toggle("tr_align")
        face_choice = face_choice_select("tr_face_choice")
    with right:
        backbone_name, unavailable = choose_backbone()
        can_finetune = fine_tunable(backbone_name) and not unavailable
        if not can_finetune and st.session_state.get("tr_mode") == "finetune":
            st.session_state["tr_mode"] = "head"
        mode = st.radio("Training mode", list(MODE_LABELS), key="tr_mode", format_func=MODE_LABELS.get,
                        disabled=not can_finetune,
                        help=None if can_finetune else "Fine-tuning needs a fine-tunable face model whose weights are on this server.")
        head = "softmax"
        if mode == "head":
            kinds = head_kinds()
            head = st.selectbox("Head", list(kinds), index=list(kinds).index(TrainConfig().head), key="tr_head",
                                format_func=lambda k: kinds[k].label)
            st.caption(kinds[head].description)
    st.subheader("Settings")
    config = hyper_parameters(mode, head, backbone_name)
    name = st.text_input("Run name (optional)", key="tr_name", placeholder="a name is made from the settings")

    if unavailable:
        st.warning(f"{BACKBONES.entry(backbone_name).label} cannot be used: {unavailable}")
    elif root is not None and detector_name is not None:
        with user_errors("Could not estimate the duration"):
            show_estimate(root, detector_name, backbone_name, align, config, face_choice)
    if st.button("Start training", type="primary", disabled=busy, key="tr_start"):
        with user_errors("Cannot start"):
            if unavailable:
                raise ValueError(f"the {backbone_name} face model is unavailable: {unavailable}")
            if root is None:
                raise ValueError("choose a dataset first.")
            if detector_name is None:
                raise ValueError("no face detector is usable on this server.")
            check_trainable(root)
            config.validate()
            name = check_run_name(name) if name.strip() else None  # refused now, not after the training
            pipeline = Pipeline(detector(detector_name), backbone(backbone_name), align=align, face_choice=face_choice)
            st.session_state[JOB] = start_training(root, pipeline, config, name)
            st.rerun()


# --- the running job -------------------------------------------------------------------------------


def eta(seconds: float | None) -> str:
    return "estimating the time left…" if seconds is None else f"about {duration(seconds)} left"


def stop_button(job: TrainJob) -> None:
    """Drawn with the page, not in the live view: a button redrawn every second often lost a real click."""
    enabled = st.session_state[STOP_ENABLED] = job.snapshot().can_stop
    st.button("Stop", key="tr_stop", on_click=job.stop.set, disabled=not enabled,
              help="End training now and keep the best model seen so far (saved with status 'stopped').")


@st.fragment(run_every=1.0)
def live_view() -> None:
    """Redrawn every second while the job runs: progress and curves."""
    session_workspace()  # a fragment's own runs skip app.py
    job = st.session_state.get(JOB)
    if job is None:
        return
    now = job.snapshot()
    if not now.running or now.can_stop != st.session_state.get(STOP_ENABLED):
        st.rerun()  # the whole page shows the results, or redraws Stop (disabled once evaluation began)
    if now.phase == "embedding":
        st.progress(now.fraction, text=f"Embedding photos {now.done}/{now.total} · {eta(now.eta_seconds)}")
    elif now.phase == "training":
        text = f"Epoch {now.done}/{now.total} · {eta(now.eta_seconds)} (at most; early stopping may end sooner)"
        st.progress(now.fraction, text=text if now.done else "Preparing the model…")
    else:
        st.progress(1.0, text="Evaluating on the validation and test photos…")
    if now.stopping:
        st.caption("Stopping… the best model so far is being saved.")
    history = job.history()
    if history:
        show_curves(history, "tr_live")


def job_section() -> None:
    job = st.session_state.get(JOB)
    if job is None:
        return
    st.header("Training")
    now = job.snapshot()
    if now.running:
        stop_button(job)  # above the live view, so the view growing (curves, messages) never moves it
        live_view()
    elif now.outcome is not None:
        with user_errors("The run's report cannot be shown"):
            show_report(load_report(now.outcome.info.id), "tr_final")
    else:
        st.error(plain(f"Training did not finish: {now.error}"))


st.title("Train")
show_flash()
settings_and_start()
job_section()
runs_section()
