"""Train page: pick a dataset and a pipeline, train a recogniser while watching it learn, manage the saved runs.

Training runs in a background thread owned by the user's session (a ``TrainJob`` in
``st.session_state``): a button click reruns the page script and would otherwise interrupt a
long call. The thread only writes to its job object and never calls ``st.*``; a fragment polls
the job every second to redraw the progress bar and the curves. The Stop button sits outside that
fragment, so a click never lands on a button being replaced. The face detector loads when Start
is pressed, not to draw the page (MTCNN loads TensorFlow). Everything else — embedding, training,
saving, evaluation — is ``core`` code shared with the CLI.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core import runs as run_store
from core.config import allow_server_paths, weights_dir
from core.data.layout import fingerprint, scan, thumbnail
from core.images import content_hash
from core.pipeline.backbones import BACKBONES, default_backbone
from core.pipeline.detection import DEFAULT_DETECTOR, DETECTORS
from core.pipeline.embeddings import EmbeddingCache, Pipeline, photo_cache_key
from core.training.config import CLASS_WEIGHTINGS, TrainConfig
from core.training.heads import HEADS, head_class, head_kinds
from pages.common import (
    backbone,
    choose,
    dataset_picker,
    detector,
    ensure_app_navigation,
    flash,
    show_flash,
    user_errors,
)

ensure_app_navigation()

JOB = "tr_job"
STOP_ENABLED = "tr_stop_enabled"  # whether the page last drew Stop enabled (the fragment redraws the page when that changes)
THUMB = 120
LEARNING_RATES = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
MODE_LABELS = {"head": "Head on face embeddings (fast)", "finetune": "Fine-tune VGGFace16 end to end (slow)"}
# Rough CPU seconds per photo not yet in the embedding cache (2-core machine, web-sized photos). The
# estimate is only as good as these: detectors slow down on large photos, fine-tuning varies most.
DETECT_SECONDS = {"haar": 0.05, "dlib-hog": 0.2, "mtcnn": 0.35, "dlib-cnn": 1.5}
EMBED_SECONDS = {"dlib-resnet": 0.05, "vggface16": 0.35}
CACHED_SECONDS = 0.01
FINETUNE_IMAGES_PER_SECOND = 2.0
log = logging.getLogger("facelab.train")


# --- the background job ----------------------------------------------------------------------------


class Cancelled(Exception):
    """The user pressed Stop before training began (while photos were being embedded)."""


@dataclass
class Outcome:
    """What a finished job shows: the saved run, the training result, skipped photos and the validation mistakes."""

    info: Any  # core.runs.RunInfo
    result: Any  # core.training.TrainResult
    report: dict[str, Any]
    mistakes: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)


@dataclass
class TrainJob:
    """One session's training run. The thread writes these fields; the page only reads them."""

    config: TrainConfig
    root: Path
    stop: threading.Event = field(default_factory=threading.Event)
    phase: str = "embedding"  # embedding → training → evaluating → done | failed | cancelled
    started: float = field(default_factory=time.time)
    photos_done: int = 0
    photos_total: int = 0
    epochs: list[dict[str, float]] = field(default_factory=list)
    epoch_ends: list[float] = field(default_factory=list)  # time.time() at the end of each epoch, for the ETA
    outcome: Outcome | None = None
    error: str | None = None
    thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def running(self) -> bool:
        return self.phase in {"embedding", "training", "evaluating"}

    def history(self) -> dict[str, list[float]]:
        """The epochs so far as training.HISTORY_KEYS → values (a snapshot; the thread keeps appending)."""
        with self._lock:
            epochs = list(self.epochs)
        keys = epochs[0].keys() if epochs else ()
        return {key: [epoch[key] for epoch in epochs] for key in keys}

    def _progress(self, done: int, total: int) -> None:
        if self.stop.is_set():
            raise Cancelled
        self.photos_done, self.photos_total = done, total
        if done == total:
            self.phase = "training"

    def _on_epoch(self, epoch: int, logs: dict[str, float]) -> None:
        with self._lock:
            self.epochs.append(dict(logs))
            self.epoch_ends.append(time.time())

    def epochs_left_seconds(self) -> float | None:
        """Time the remaining epochs would take at the pace since the first one (which also paid for set-up)."""
        ends = self.epoch_ends[:]
        if len(ends) < 2:
            return None
        return (ends[-1] - ends[0]) / (len(ends) - 1) * (self.config.epochs - len(ends))

    def start(self, pipeline: Pipeline, name: str | None) -> None:
        self.thread = threading.Thread(target=self._run, args=(pipeline, name), name="facelab-train", daemon=True)
        self.thread.start()

    def _run(self, pipeline: Pipeline, name: str | None) -> None:
        from core.services.train import train_on_dataset

        try:
            info, result, report = train_on_dataset(self.root, pipeline, self.config, progress=self._progress,
                                                    on_epoch=self._on_epoch, should_stop=self.stop.is_set,
                                                    name=name)
            self.phase = "evaluating"
            outcome = Outcome(info, result, report, [])
            try:
                outcome.mistakes = validation_mistakes(info.id, pipeline, self.root)
            except (ValueError, RuntimeError, OSError) as exc:
                outcome.notes.append(f"The misclassified validation photos could not be listed: {exc}")
            self.outcome, self.phase = outcome, "done"
        except Cancelled:
            self.error, self.phase = ("Stopped while embedding the photos, before training began: no run was "
                                      "saved (the photos embedded so far are cached)."), "cancelled"
        except (ValueError, RuntimeError, OSError, KeyError) as exc:
            self.error, self.phase = str(exc), "failed"
        except Exception as exc:  # noqa: BLE001 - the thread must always end in a state the page can show
            log.exception("training failed")
            self.error, self.phase = f"unexpected {type(exc).__name__}: {exc}", "failed"


def validation_mistakes(run_id: str, pipeline: Pipeline, root: Path) -> list[dict[str, Any]]:
    """Validation photos the new run names wrongly, as the confusion matrix counts them (largest face, no rejection)."""
    from core.compare.unknown import UnknownRule
    from core.runs import load_run
    from core.services.predict import Predictor

    records = [r for r in scan(root).images if r.split == "validation" and r.person is not None]
    if not records:
        return []
    predictor = Predictor(load_run(run_id), pipeline, UnknownRule(min_confidence=0.0))
    photos = predictor.predict([r.path for r in records], [r.person for r in records])
    return [{"path": record.path, "truth": photo.truth, "predicted": photo.predicted,
             "confidence": photo.faces[0].confidence}
            for record, photo in zip(records, photos) if photo.faces and photo.correct is False]


# --- settings --------------------------------------------------------------------------------------


def weights_panel() -> None:
    """Ways to get the VGG-Face weights: download them, or install a file already on the server."""
    from core.pipeline import weights

    with st.expander("Get the VGG-Face weights"):
        st.write(f"The weights (about 580 MB) go to `{weights_dir()}` and are checked before use.")
        if st.button("Download the weights", key="tr_weights_download"):
            bar = st.progress(0.0, text="Downloading…")

            def report(done: int, total: int) -> None:
                bar.progress(min(1.0, done / max(total, 1)), text=f"Downloading {done / 1e6:.0f} / {total / 1e6:.0f} MB")

            with user_errors("Download failed"):
                path = weights.download("vggface16", progress=report)
                flash("success", f"Installed {path.name}; VGG-Face is ready.")
                st.rerun()
        if allow_server_paths():
            local = st.text_input("Or use a weights file on the server", key="tr_weights_path",
                                  placeholder="/data/rcmalli_vggface_tf_vgg16.h5").strip()
            if st.button("Use this file", disabled=not local, key="tr_weights_install"):
                with user_errors("Could not use the file"):
                    path = weights.install_local(local)
                    flash("success", f"Installed {path.name}; VGG-Face is ready.")
                    st.rerun()
        else:
            st.caption("Using a local file needs access to the server: its owner can run "
                       "`python -m core weights --from PATH`.")


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
    if reasons.get("vggface16"):
        weights_panel()
    return name, reasons[name]


def fine_tunable(backbone_name: str) -> bool:
    """Whether the backbone's class supports end-to-end fine-tuning (read without loading the model)."""
    return bool(getattr(BACKBONES.entry(backbone_name).factory, "fine_tunable", False))


def hyper_parameters(mode: str, head: str) -> TrainConfig:
    """The training settings; defaults differ per mode (fine-tuning: fewer epochs, smaller batches)."""
    finetune = mode == "finetune"
    defaults = TrainConfig()
    config = TrainConfig(head=head, mode=mode)
    if head == "centroid" and not finetune:
        st.caption("The nearest-centroid head has no epochs: it averages each person's embeddings in one pass.")
        return config
    columns = st.columns(3)
    config.epochs = int(columns[0].number_input("Epochs (at most)", 1, 5000, 10 if finetune else defaults.epochs,
                                                key=f"tr_epochs_{mode}"))
    config.batch_size = int(columns[1].number_input("Batch size", 1, 1024, 16 if finetune else defaults.batch_size,
                                                    key=f"tr_batch_{mode}"))
    config.learning_rate = float(columns[2].select_slider(
        "Learning rate", LEARNING_RATES, value=defaults.learning_rate, key=f"tr_lr_{mode}", format_func=lambda v: f"{v:g}",
        help="Fine-tuning uses it for the warm-up and a rate 100× lower once the network is unfrozen." if finetune
        else None))
    columns = st.columns(3)
    config.seed = int(columns[0].number_input("Seed", 0, 2**31 - 1, defaults.seed, key="tr_seed",
                                              help="The same seed and settings give the same run."))
    config.class_weighting = columns[1].selectbox(
        "Class weighting", CLASS_WEIGHTINGS, key="tr_weighting",
        help="balanced: every person counts equally in the loss, however many photos they have.")
    config.early_stopping_patience = int(columns[2].number_input(
        "Early-stopping patience", 0, 1000, defaults.early_stopping_patience, key="tr_patience",
        help="Stop after this many epochs without a better validation loss (0: never stop early). "
             "The best epoch's weights are kept."))
    if finetune:
        columns = st.columns(3)
        config.warmup_epochs = int(columns[0].number_input("Warm-up epochs", 0, 100, defaults.warmup_epochs,
                                                           key="tr_warmup", help="Only the new softmax learns."))
        config.finetune_blocks = int(columns[1].slider("Conv blocks to unfreeze", 0, 5, defaults.finetune_blocks,
                                                       key="tr_blocks", help="Counted from the top of VGG16."))
        config.augment = columns[2].checkbox("Augment (mirror, rotate, shift, brightness)", value=defaults.augment,
                                             key="tr_augment")
    return config


@st.cache_data(ttl=300, max_entries=16, show_spinner="Checking which photos are already embedded…")
def photo_counts(root: str, dataset_fingerprint: str, detector_key: str, align: bool, backbone_key: str,
                 cache_root: str, generation: int) -> dict[str, int]:
    """How many photos the dataset has (all, train) and how many are not yet in this pipeline's embedding cache.

    ``dataset_fingerprint`` and ``generation`` (runs saved so far) only key the cache.
    """
    cache = EmbeddingCache(Path(cache_root))
    counts = {"total": 0, "uncached": 0, "train": 0}
    for record in scan(root).images:
        counts["total"] += 1
        counts["train"] += record.split == "train"
        try:
            key = photo_cache_key(content_hash(record.path.read_bytes()), detector_key, align, backbone_key)
        except OSError:
            continue  # unreadable: skipped and listed by the training itself
        counts["uncached"] += cache.get(key, record.path.name) is None
    return counts


def duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def dataset_counts(root: Path, detector_name: str, align: bool, backbone_name: str) -> dict[str, int]:
    """``photo_counts`` for the pipeline Start would build, without loading its detector.

    The backbone is loaded (dlib ResNet: a fraction of a second): its cache key holds its weights' checksum.
    """
    dataset = scan(root)
    detector_key = DETECTORS.entry(detector_name).factory.default_cache_key()
    return photo_counts(str(dataset.root), fingerprint(dataset), detector_key, align,
                        backbone(backbone_name).cache_key(), str(EmbeddingCache().root), len(run_store.list_runs()))


def show_estimate(counts: dict[str, int], detector_name: str, backbone_name: str, config: TrainConfig) -> None:
    """An honest estimate of the run's length from ``photo_counts`` and rough per-photo and per-epoch costs."""
    per_photo = DETECT_SECONDS.get(detector_name, 0.5) + EMBED_SECONDS.get(backbone_name, 0.3)
    cached = counts["total"] - counts["uncached"]
    embed = counts["uncached"] * per_photo + cached * CACHED_SECONDS
    parts = [f"embedding {counts['uncached']} new photo(s) × ~{per_photo:.2f} s"
             + (f" ({cached} already cached)" if cached else "")]
    if config.mode == "finetune":
        from core.training.finetune import epochs_estimate_seconds

        crops = counts["total"] * DETECT_SECONDS.get(detector_name, 0.5)
        train = crops + epochs_estimate_seconds(counts["train"], config.epochs, FINETUNE_IMAGES_PER_SECOND)
        parts.append(f"{config.epochs} fine-tuning epoch(s) of {counts['train']} crops at "
                     f"~{FINETUNE_IMAGES_PER_SECOND:g} images/s on a CPU")
    elif config.head == "centroid":
        train = 1.0
        parts.append("averaging embeddings (instant)")
    else:
        train = 3.0 + config.epochs * (0.03 + counts["train"] / 5000)
        parts.append(f"up to {config.epochs} head epochs (a fraction of a second each)")
    st.info(f"Estimated time: about **{duration(embed + train)}** — {'; '.join(parts)}. This is a rough estimate "
            "for this server's CPU; early stopping often ends training sooner.")


def pre_check(root: Path) -> None:
    """Refuse datasets that cannot train before any photo is embedded (embedding can take minutes)."""
    people = {r.person for r in scan(root).images if r.split == "train" and r.person is not None}
    if not people:
        raise ValueError(f"the train split of {root.name} is empty: put photos in train/<person>/ folders.")
    if len(people) < 2:
        raise ValueError(f"training needs at least two people; the train split of {root.name} only has "
                         f"{next(iter(people))!r}.")


def settings_and_start() -> None:
    job = st.session_state.get(JOB)
    busy = job is not None and job.running
    left, right = st.columns(2)
    with left:
        root = dataset_picker("Dataset", key="tr_dataset")
        detector_name = choose("face detector", DETECTORS, DEFAULT_DETECTOR, "tr_detector")
        align = st.toggle("Align faces (level the eyes)", value=True, key="tr_align")
    with right:
        backbone_name, unavailable = choose_backbone()
        can_finetune = fine_tunable(backbone_name) and not unavailable
        if not can_finetune and st.session_state.get("tr_mode") == "finetune":
            st.session_state["tr_mode"] = "head"
        mode = st.radio("Training mode", list(MODE_LABELS), key="tr_mode", format_func=MODE_LABELS.get,
                        disabled=not can_finetune,
                        help=None if can_finetune else "Fine-tuning needs VGGFace16 with its weights.")
        head = "softmax"
        if mode == "head":
            kinds = head_kinds()
            head = st.selectbox("Head", list(kinds), index=list(kinds).index(TrainConfig().head), key="tr_head",
                                format_func=lambda k: kinds[k].label)
            st.caption(kinds[head].description)
    st.subheader("Settings")
    config = hyper_parameters(mode, head)
    name = st.text_input("Run name (optional)", key="tr_name", placeholder="a name is made from the settings")

    if unavailable:
        st.warning(f"{BACKBONES.entry(backbone_name).label} cannot be used: {unavailable}")
    elif root is not None and detector_name is not None:
        with user_errors("Could not estimate the duration"):
            show_estimate(dataset_counts(root, detector_name, align, backbone_name), detector_name, backbone_name,
                          config)
    if st.button("Start training", type="primary", disabled=busy, key="tr_start"):
        with user_errors("Cannot start"):
            if unavailable:
                raise ValueError(f"the {backbone_name} face model is unavailable: {unavailable}")
            if root is None:
                raise ValueError("choose a dataset first.")
            if detector_name is None:
                raise ValueError("no face detector is usable on this server.")
            pre_check(root)
            config.validate()
            pipeline = Pipeline(detector(detector_name), backbone(backbone_name), align=align)
            job = TrainJob(config=config, root=root)
            st.session_state[JOB] = job
            job.start(pipeline, name.strip() or None)
            st.rerun()


# --- live view and results ---------------------------------------------------------------------------


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


def eta(seconds: float | None) -> str:
    return "estimating the time left…" if seconds is None else f"about {duration(seconds)} left"


def can_stop(job: TrainJob) -> bool:
    """Stop ends embedding or training; once requested, or once evaluation began, there is nothing left to stop."""
    return job.running and not job.stop.is_set() and job.phase != "evaluating"


def stop_button(job: TrainJob) -> None:
    """Drawn with the page, not in the live view: a button redrawn every second often lost a real click."""
    enabled = st.session_state[STOP_ENABLED] = can_stop(job)
    st.button("Stop", key="tr_stop", on_click=job.stop.set, disabled=not enabled,
              help="End training now and keep the best model seen so far (saved with status 'stopped').")


@st.fragment(run_every=1.0)
def live_view() -> None:
    """Redrawn every second while the job runs: progress and curves."""
    job = st.session_state.get(JOB)
    if job is None:
        return
    if not job.running or can_stop(job) != st.session_state.get(STOP_ENABLED):
        st.rerun()  # the whole page shows the results, or redraws Stop (disabled once evaluation began)
    now = time.time()
    if job.phase == "embedding":
        done, total = job.photos_done, max(job.photos_total, 1)
        left = (now - job.started) / done * (total - done) if done else None
        st.progress(done / total, text=f"Embedding photos {done}/{job.photos_total} · {eta(left)}")
    elif job.phase == "training":
        epochs, total = len(job.epochs), job.config.epochs
        text = f"Epoch {epochs}/{total} · {eta(job.epochs_left_seconds())} (at most; early stopping may end sooner)"
        if not epochs:
            text = "Preparing the model…"
        st.progress(min(1.0, epochs / total), text=text)
    else:
        st.progress(1.0, text="Evaluating on the validation and test photos…")
    if job.stop.is_set():
        st.caption("Stopping… the best model so far is being saved.")
    history = job.history()
    if history:
        show_curves(history, "tr_live")


def percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def confusion_figure(metrics: dict[str, Any]) -> go.Figure:
    labels = metrics["labels"]
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


def skipped_table(report: dict[str, Any]) -> pd.DataFrame:
    rows = []
    for split, entry in report.items():
        rows += [{"split": split, "photo": photo, "what happened": "skipped: no face found"} for photo in entry["no_face"]]
        rows += [{"split": split, "photo": photo, "what happened": f"skipped: {error}"}
                 for photo, error in entry["errors"].items()]
        rows += [{"split": split, "photo": photo, "what happened": "several faces: the largest was used"}
                 for photo in entry["many_faces"]]
    return pd.DataFrame(rows, columns=["split", "photo", "what happened"])


def show_mistakes(mistakes: list[dict[str, Any]]) -> None:
    st.subheader(f"Misclassified validation photos ({len(mistakes)})")
    if not mistakes:
        st.success("Every validation photo with a face was named right.")
        return
    columns = st.columns(6)
    for i, mistake in enumerate(mistakes):
        with columns[i % 6]:
            caption = f"{mistake['truth']} → {mistake['predicted']} ({mistake['confidence']:.0%})"
            try:
                st.image(thumbnail(mistake["path"], THUMB), caption=caption)
            except ValueError as exc:
                st.warning(f"{caption}: {exc}")


def show_outcome(outcome: Outcome) -> None:
    info, result = outcome.info, outcome.result
    status = "stopped by you, the best model so far was kept" if result.stopped else "complete"
    st.success(f"Saved run **{info.name}** — {status}: {result.epochs_run} epoch(s) in {result.seconds:.1f} s, "
               f"kept epoch {result.best_epoch + 1}.")
    columns = st.columns(4)
    columns[0].metric("Validation accuracy", percent(info.val_accuracy))
    columns[1].metric("Test accuracy", percent(info.test_accuracy))
    columns[2].metric("People", info.people)
    columns[3].metric("Epochs", result.epochs_run)
    for warning in [*result.warnings, *outcome.notes]:
        st.warning(warning)
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


def job_section() -> None:
    job = st.session_state.get(JOB)
    if job is None:
        return
    st.header("Training")
    if job.running:
        stop_button(job)  # above the live view, so the view growing (curves, messages) never moves it
        live_view()
    elif job.phase == "done" and job.outcome is not None:
        show_outcome(job.outcome)
    else:
        st.error(f"Training did not finish: {job.error}")


# --- runs ------------------------------------------------------------------------------------------


def created(info: Any) -> str:
    try:
        return datetime.fromisoformat(info.created).astimezone().strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return info.created


def runs_frame(runs: list[Any], active: str | None) -> pd.DataFrame:
    rows = []
    for info in runs:
        config = run_store.run_config(info)
        rows.append({"active": "★" if info.id == active else "", "name": info.name, "status": info.status,
                     "val accuracy": info.val_accuracy, "test accuracy": info.test_accuracy, "people": info.people,
                     "head": info.head, "detector": config.get("detector", "?"),
                     "backbone": config.get("backbone", "?"), "dataset": Path(config.get("dataset", "")).name,
                     "created": created(info), "epochs": info.epochs_run, "seconds": round(info.seconds, 1),
                     "id": info.id})
    return pd.DataFrame(rows)


def run_actions(info: Any, active: str | None) -> None:
    left, middle, right = st.columns(3)
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
        st.download_button("Download run (zip)", lambda: run_store.export_run_zip(info.id),
                           file_name=f"facelab_run_{info.id}.zip", mime="application/zip", key="tr_run_zip",
                           help="Every file of the run: model, labels, settings, history and metrics.")
        exportable = info.head in HEADS.entries() and head_class(info.head).savedmodel
        st.download_button("Download SavedModel (zip)", lambda: run_store.export_savedmodel_zip(info.id),
                           file_name=f"facelab_savedmodel_{info.id}.zip", mime="application/zip",
                           key="tr_run_savedmodel", disabled=not exportable,
                           help="The head as a TensorFlow SavedModel: raw embeddings in, probabilities out "
                                "(in the order of its labels.json).")
        if not exportable:
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
    chosen = st.selectbox("Run", list(by_id), key="tr_run_pick",
                          format_func=lambda i: f"{by_id[i].name} · {created(by_id[i])} · {i}")
    run_actions(by_id[chosen], active)


st.title("Train")
show_flash()
settings_and_start()
job_section()
runs_section()
