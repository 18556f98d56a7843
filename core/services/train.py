"""The train service: a dataset folder in, a saved run out (check, embed, train, evaluate, save).

The CLI's ``train`` and the Train page both come here: :func:`check_trainable` refuses a dataset
before any photo is embedded, :func:`estimate` says how long a run would take, and
:func:`train_on_dataset` does the work — run in the background by :func:`start_training`, whose
:class:`TrainJob` the page polls and stops.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.compare.unknown import UnknownRule, calibrate_max_distance
from core.data.layout import fingerprint, scan
from core.images import load_image
from core.pipeline.alignment import DEFAULT_CROP
from core.pipeline.backbones import BACKBONES
from core.pipeline.detection import DETECTORS
from core.pipeline.embeddings import EmbeddingCache, Pipeline, Progress, Stopped, embed_dataset, pipeline_key
from core.pipeline.face_choice import DEFAULT_FACE_CHOICE
from core.pipeline.throughput import Measurement, detection_key, embedding_key, measured, record
from core.runs import RunInfo, add_to_report, check_run_name, load_run, save_run
from core.services.finetuned import verification_extras
from core.services.jobs import Cancelled, Job, exact_duration
from core.services.predict import EMBEDDING_SPACE, FINETUNED_SPACE, Predictor
from core.training.config import EpochCallback, StopCheck, TrainConfig, TrainResult
from core.training.fit import train_head
from core.training.heads import head_class
from core.training.metrics import classification_metrics, encode_labels, people_to_learn

PHASES = ("embedding", "training", "evaluating")
STOPPED_WHILE_EMBEDDING = ("Stopped while embedding the photos, before training began: no run was saved "
                           "(the photos embedded so far are cached).")
CACHED_SECONDS = 0.01  # reading one photo's embeddings back from the cache, for the estimate
Report = dict[str, dict[str, Any]]  # split → photos, used, no_face, errors, many_faces


@dataclass
class Mistake:
    """A validation photo the new run names wrongly."""

    path: Path
    truth: str
    predicted: str
    confidence: float


@dataclass
class TrainOutcome:
    """What a training run produced: the saved run, the training result, the photos not used as they are
    (``report``), the validation mistakes and notes about what could not be shown."""

    info: RunInfo
    result: TrainResult
    report: Report
    mistakes: list[Mistake] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per phase and "total", as saved with the run


@dataclass(frozen=True)
class Estimate:
    """How long a run would take, and the parts of that figure a person can check."""

    seconds: float
    parts: tuple[str, ...]  # e.g. "embedding 117 new photo(s) × 1.50 s measured here", "up to 100 head epochs (…)"
    rough: bool = False  # no embedding speed was measured on this machine yet: the plug-ins' declared costs

    @property
    def details(self) -> str:
        return "; ".join(self.parts)


def check_trainable(root: Path | str) -> None:
    """Refuse a dataset that cannot train before any photo is embedded (embedding can take minutes)."""
    dataset = scan(root)
    people = [r.person for r in dataset.images if r.split == "train" and r.person is not None]
    if not people:
        raise ValueError(f"the train split of {dataset.name} is empty: put photos in train/<person>/ folders.")
    people_to_learn(people, f"the train split of {dataset.name}")


def embedding_pace(detector_name: str, backbone_name: str) -> Measurement | None:
    """Seconds per new photo measured on this machine for this detector and backbone, or None."""
    return measured(embedding_key(detector_name, backbone_name))


def estimate(root: Path | str, detector_name: str, backbone_name: str, align: bool, config: TrainConfig,
             face_choice: str = DEFAULT_FACE_CHOICE, crop: str = DEFAULT_CROP) -> Estimate:
    """A duration from the photos not yet in the embedding cache, at the speed measured on this machine.

    Only while nothing was measured here does it fall back to the plug-ins' declared costs, and says so
    (``rough``). The detector is not built (counting needs no network): its class gives its cache key
    and cost. The backbone is (dlib ResNet: a fraction of a second), as its cache key holds its weights' checksum.
    """
    detector = DETECTORS.entry(detector_name).factory
    backbone = BACKBONES.entry(backbone_name).factory
    records = scan(root).images
    key = pipeline_key(detector.default_cache_key(), align, BACKBONES.get(backbone_name).cache_key(), face_choice, crop)
    uncached = len(EmbeddingCache().missing([r.path for r in records], key))
    cached, train = len(records) - uncached, sum(r.split == "train" for r in records)
    pace = embedding_pace(detector_name, backbone_name)
    per_photo = pace.seconds_per_photo if pace else detector.seconds_per_photo + backbone.seconds_per_photo
    seconds = uncached * per_photo + cached * CACHED_SECONDS
    per_new = f"{per_photo:.2f} s measured here" if pace else f"~{per_photo:.2f} s"
    parts = [f"embedding {uncached} new photo(s) × {per_new}" + (f" ({cached} already cached)" if cached else "")]
    config.check_backbone(backbone)
    if config.mode == "finetune":
        rate = backbone.finetune_images_per_second
        detecting = measured(detection_key(detector_name))
        per_crop = detecting.seconds_per_photo if detecting else detector.seconds_per_photo
        seconds += len(records) * per_crop + math.ceil(train * config.epochs / max(rate, 1e-6))
        parts.append(f"{config.epochs} fine-tuning epoch(s) of {train} crops at ~{rate:g} images/s on a CPU")
    elif not head_class(config.head).iterative:
        seconds += 1.0
        parts.append("averaging embeddings (instant)")
    else:
        seconds += 3.0 + config.epochs * (0.03 + train / 5000)
        parts.append(f"up to {config.epochs} head epochs (a fraction of a second each)")
    return Estimate(seconds, tuple(parts), rough=pace is None)


def timing_summary(timings: dict[str, float]) -> str:
    """ "Trained in 4 min 52 s: embedding 4 min 20 s, training 32 s" (evaluating too when it took a second or so)."""
    parts = [f"{phase} {exact_duration(timings[phase])}" for phase in PHASES
             if phase in timings and (phase != "evaluating" or timings[phase] >= 0.5)]
    return f"Trained in {exact_duration(timings.get('total', 0.0))}" + (f": {', '.join(parts)}" if parts else "")


class _EmbeddingClock:
    """Times an embedding job's new photos (those not in the cache) for the throughput store.

    Progress arrives once per photo, in order; the time between two reports belongs to the later photo.
    Cached photos' time is taken out of the total, so what is left is detection, alignment and embedding
    (the last batch of crops is embedded after the last report: it counts, as the total includes it).
    """

    def __init__(self, new: Sequence[bool], progress: Progress | None) -> None:
        self.new, self.progress = new, progress
        self.start = self.last = time.perf_counter()
        self.cached_seconds, self.done = 0.0, 0

    def __call__(self, done: int, total: int) -> None:
        now = time.perf_counter()
        if 0 < done <= len(self.new) and not self.new[done - 1]:
            self.cached_seconds += now - self.last
        self.last, self.done = now, done
        if self.progress is not None:
            self.progress(done, total)

    def remember(self, key: str) -> None:
        """Record the new photos embedded so far (also after a stop: the first photos are a measurement too)."""
        new_done = sum(self.new[:self.done])
        record(key, time.perf_counter() - self.start - self.cached_seconds, new_done)


def _chosen_crops(root: Path, paths: Sequence[str], pipeline: Pipeline) -> np.ndarray:
    """Aligned crops of each photo's chosen face, face 0 (fine-tuning learns from pixels, not embeddings)."""

    crops = [pipeline.faces(load_image(root / path))[0][1].crop for path in paths]
    size = pipeline.backbone.input_size
    return np.stack(crops) if crops else np.zeros((0, size, size, 3), np.uint8)


def train_on_dataset(root: Path | str, pipeline: Pipeline, config: TrainConfig, *, progress: Progress | None = None,
                     on_epoch: EpochCallback | None = None, should_stop: StopCheck | None = None,
                     on_phase: Callable[[str], None] | None = None, name: str | None = None,
                     expect: Callable[[float], None] | None = None) -> TrainOutcome:
    """Embed (or crop) a dataset, train in the configured mode, evaluate on test, save a run.

    The report lists photos skipped per split (no face, unreadable) and those whose chosen face
    was used among several — nothing is dropped silently. ``should_stop`` ends embedding between
    photos (:class:`~core.services.jobs.Cancelled`: nothing saved) or training between batches (the
    best model so far is saved as "stopped"). ``on_phase`` hears "training", then "evaluating";
    ``expect`` hears the embedding's expected seconds per photo when this machine's pace is known
    (for an ETA from the first photo). The time of each phase is saved with the run, and the new
    photos' embedding pace is remembered for the next estimate (:mod:`core.pipeline.throughput`).
    """

    config.validate()
    name = None if name is None else check_run_name(name)  # a bad name is refused now, not after the training
    check_trainable(root)
    dataset = scan(root)
    config.dataset, config.dataset_fingerprint = str(dataset.root), fingerprint(dataset)
    config.detector, config.align = pipeline.detector.name, pipeline.align
    config.extra["detector_settings"] = dict(pipeline.detector.settings)
    config.extra["face_choice"] = pipeline.face_choice  # the run names photos by the same face it learnt from
    config.extra["crop"] = pipeline.crop  # and cuts them the same way
    config.backbone, config.weights_id = pipeline.backbone.name, pipeline.backbone.weights_id
    config.check_backbone(pipeline.backbone)  # before minutes of embedding
    started = time.perf_counter()
    missing = set(EmbeddingCache().missing([r.path for r in dataset.images], pipeline.key))
    new = [r.path in missing for r in dataset.images]
    pace_key = embedding_key(pipeline.detector.name, pipeline.backbone.name)
    pace = measured(pace_key)
    if pace is not None and expect is not None and new:
        expect((sum(new) * pace.seconds_per_photo + (len(new) - sum(new)) * CACHED_SECONDS) / len(new))
    clock = _EmbeddingClock(new, progress)
    try:
        splits = embed_dataset(dataset.root, pipeline, progress=clock, should_stop=should_stop)
    except Stopped as exc:
        clock.remember(pace_key)
        raise Cancelled(STOPPED_WHILE_EMBEDDING) from exc
    clock.remember(pace_key)
    embedded = time.perf_counter()
    train = splits.get("train")
    if train is None or not train.paths:
        raise ValueError("the train split has no photo with a face: nothing to learn from.")
    if on_phase is not None:
        on_phase("training")
    val, test = splits.get("validation"), splits.get("test")
    report = {name_: {"photos": s.photos, "used": len(s.paths), "no_face": s.no_face, "errors": s.errors,
                      "many_faces": s.many_faces} for name_, s in splits.items()}
    finetune = config.mode == "finetune"
    train_vectors, val_vectors = train.embeddings, val.embeddings if val else None
    if finetune:
        from core.training.finetune import train_finetune  # lazy: imports Keras and TensorFlow, only fine-tune runs pay for it

        crops_train = _chosen_crops(dataset.root, train.paths, pipeline)
        crops_val = _chosen_crops(dataset.root, val.paths if val else [], pipeline)
        result = train_finetune(config, crops_train, train.labels, crops_val, val.labels if val else [],
                                pipeline.backbone, on_epoch=on_epoch, should_stop=should_stop)
        # The gallery and the unknown-face distance live in the fine-tuned network's embedding space, where
        # Predict measures the distance of a new face (core.services.predict.Predictor).
        train_vectors, val_vectors = result.head.embed(crops_train), result.head.embed(crops_val)
    else:
        result = train_head(config, train.embeddings, train.labels, val.embeddings if val else None,
                            val.labels if val else None, on_epoch=on_epoch, should_stop=should_stop)
    trained = time.perf_counter()
    if on_phase is not None:
        on_phase("evaluating")
    test_metrics = None
    if test is not None and test.paths and all(label is not None for label in test.labels):
        inputs = _chosen_crops(dataset.root, test.paths, pipeline) if finetune else test.embeddings
        codes = encode_labels(test.labels, result.labels)
        known = codes >= 0
        if known.any():
            test_metrics = classification_metrics(codes[known], result.head.predict(inputs[known]), result.labels)
            test_metrics["no_face"] = len(test.no_face)
    max_distance = calibrate_max_distance(train_vectors, train.labels, val_vectors, val.labels) if val else None
    extras = {"train_embeddings": train_vectors, "train_labels": np.array(train.labels, dtype=str),
              "train_paths": np.array(train.paths, dtype=str),
              "unknown_max_distance": np.float32(np.nan if max_distance is None else max_distance)}
    if finetune:
        extras[EMBEDDING_SPACE] = np.array(FINETUNED_SPACE)
        # Verify's uncalibrated thresholds for this run's embedding, measured on its validation faces.
        thresholds, too_few = verification_extras(val_vectors, val.labels if val else [])
        extras.update(thresholds)
        if too_few:
            result.warnings.append(too_few)
    ended = time.perf_counter()
    timings = {"embedding": embedded - started, "training": trained - embedded, "evaluating": ended - trained,
               "total": ended - started}
    info = save_run(result, config, extras, name=name, test_metrics=test_metrics, skipped=report, timings=timings)
    outcome = TrainOutcome(info, result, report, timings=timings)
    _list_mistakes(outcome, pipeline, dataset.root)
    return outcome


def _list_mistakes(outcome: TrainOutcome, pipeline: Pipeline, root: Path) -> None:
    """Find the validation photos the saved run names wrongly and keep them in its report (the page and the CLI
    show them; a run reopened later shows them too). When that fails the run stays saved and its notes say why."""
    try:
        outcome.mistakes = validation_mistakes(outcome.info.id, pipeline, root)
        listed: list[dict[str, Any]] | None = [
            {"photo": mistake.path.relative_to(root).as_posix() if mistake.path.is_relative_to(root)
             else mistake.path.name, "truth": mistake.truth, "predicted": mistake.predicted,
             "confidence": mistake.confidence} for mistake in outcome.mistakes]
    except (ValueError, RuntimeError, OSError) as exc:
        outcome.notes.append(f"The misclassified validation photos could not be listed: {exc}")
        listed = None
    try:
        add_to_report(outcome.info.id, notes=outcome.notes, mistakes=listed)
    except (ValueError, OSError) as exc:  # the run is saved; only its reopened report lacks the mistakes
        outcome.notes.append(f"The mistakes could not be added to the run's saved report: {exc}")


def validation_mistakes(run_id: str, pipeline: Pipeline, root: Path | str) -> list[Mistake]:
    """Validation photos the run names wrongly, as the confusion matrix counts them (chosen face, no rejection)."""
    records = [r for r in scan(root).images if r.split == "validation" and r.person is not None]
    if not records:
        return []
    predictor = Predictor(load_run(run_id), pipeline, UnknownRule(min_confidence=0.0))
    photos = predictor.predict([r.path for r in records], [r.person for r in records])
    return [Mistake(record.path, str(photo.truth), str(photo.predicted), photo.faces[0].confidence)
            for record, photo in zip(records, photos) if photo.faces and photo.correct is False]


class TrainJob(Job[TrainOutcome]):
    """A training run in the background, keeping every epoch's figures for the live curves.

    Stop is honoured while embedding (nothing saved) and training (the best model so far is
    saved); once evaluation began there is nothing left to stop.
    """

    def __init__(self, config: TrainConfig) -> None:
        super().__init__(PHASES, stoppable=PHASES[:2])
        self.config = config
        self._epochs: list[dict[str, float]] = []
        self._epochs_lock = threading.Lock()

    @property
    def epochs(self) -> list[dict[str, float]]:
        """Each finished epoch's figures (training.HISTORY_KEYS → value), a copy: the thread keeps appending."""
        with self._epochs_lock:
            return list(self._epochs)

    def history(self) -> dict[str, list[float]]:
        """The epochs so far as HISTORY_KEYS → one value per epoch, the shape of TrainResult.history."""
        epochs = self.epochs
        return {key: [epoch[key] for epoch in epochs] for key in (epochs[0] if epochs else ())}

    def on_epoch(self, epoch: int, logs: dict[str, float]) -> None:
        with self._epochs_lock:
            self._epochs.append(dict(logs))
            done = len(self._epochs)
        self.progress(done, self.config.epochs)


def start_training(root: Path | str, pipeline: Pipeline, config: TrainConfig, name: str | None = None) -> TrainJob:
    """Train in the background (embedding → training → evaluating, the validation mistakes listed).

    The caller refuses what it can first (:func:`check_trainable`, ``config.validate()``, ``check_run_name``), before
    building the pipeline's models; whatever goes wrong later ends the job with a clear message.
    """

    def work(job: TrainJob) -> TrainOutcome:
        return train_on_dataset(root, pipeline, config, progress=job.progress, on_epoch=job.on_epoch,
                                should_stop=job.should_stop, on_phase=job.enter, name=name, expect=job.expect)

    return TrainJob(config).start(work, name="facelab-train")
