"""A fine-tuned run's network as a backbone, so Verify and calibration can work in its embedding space.

Fine-tune mode (core.training.finetune) retrains a backbone's face network; its run can then embed faces
itself (``FinetunedHead.embed``). :class:`FinetunedBackbone` wraps such a run behind the
:class:`~core.pipeline.backbones.base.Backbone` contract: faces are cut and preprocessed exactly as for the
backbone it grew from, and embedded by the retrained network. Its cache key names the run, so cached
embeddings, galleries and calibrations never mix with the pretrained backbone's.

Uncalibrated thresholds are measured, not assumed: at training time the run's validation faces, embedded by
the fine-tuned network, give the equal-error threshold of their same-person and different-people pairs
(:func:`verification_extras`, stored with the run). Too few validation pairs give neutral defaults, and the
backbone's :attr:`FinetunedBackbone.thresholds_note` says so.
"""

from __future__ import annotations

import threading
from collections import Counter, OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from core.compare.calibration import calibrate
from core.compare.distances import METRICS
from core.compare.verification import NEUTRAL_THRESHOLDS
from core.config import runs_dir
from core.pipeline.alignment import DEFAULT_CROP, AlignedFace
from core.pipeline.backbones import BACKBONES, Backbone
from core.pipeline.detection import DETECTORS
from core.pipeline.detection.base import Face
from core.pipeline.embeddings import Pipeline
from core.pipeline.face_choice import DEFAULT_FACE_CHOICE
from core.pipeline.weights import sha256_of
from core.runs import LoadedRun, list_runs, load_run, run_config
from core.training.heads.base import KERAS_FILE
from core.training.heads.finetuned import LAYERS_FILE, FinetunedHead

RUN_PREFIX = "run:"  # a backbone choice naming a fine-tuned run: "run:<run id>" (run ids are digits, hex and '-')
KEPT = 4  # fine-tuned networks kept loaded per process (each holds a whole face network)
# With fewer same-person pairs the equal-error rate moves in steps of more than 10 %: too coarse to set a threshold.
MIN_GENUINE_PAIRS = 10
# Gallery extras a fine-tuned run stores (core.services.train): per metric, its threshold at the equal-error rate
# of the validation pairs (NaN when there were too few), the cosine EER and the pair counts behind it.
METRICS_KEY, THRESHOLDS_KEY = "verify_metrics", "verify_thresholds"
EER_KEY, GENUINE_KEY, IMPOSTOR_KEY = "verify_eer", "verify_genuine_pairs", "verify_impostor_pairs"
NEUTRAL_NOTE = "neutral default thresholds (cosine {cosine:g}: an angle of 60°)".format(**NEUTRAL_THRESHOLDS)


def genuine_pairs(labels: Sequence[Hashable]) -> int:
    """How many same-person pairs ``labels`` hold."""
    return sum(count * (count - 1) // 2 for count in Counter(labels).values())


def verification_extras(vectors: np.ndarray, labels: Sequence[str | None]) -> tuple[dict[str, np.ndarray], str | None]:
    """The run extras holding the equal-error thresholds of validation embeddings (one row per photo), and a note
    when there were too few same-person pairs to measure them (the thresholds are then NaN)."""
    keep = [i for i, label in enumerate(labels) if label is not None]
    kept_labels = [str(labels[i]) for i in keep]
    found = genuine_pairs(kept_labels)
    extras = {METRICS_KEY: np.array(METRICS), THRESHOLDS_KEY: np.full(len(METRICS), np.nan, np.float32),
              EER_KEY: np.float32(np.nan), GENUINE_KEY: np.int64(found), IMPOSTOR_KEY: np.int64(0)}
    people = len(set(kept_labels))
    if found < MIN_GENUINE_PAIRS or people < 2:
        return extras, (f"The validation split gave {found} same-person pair(s) of {people} person(s) in the fine-tuned "
                        f"space, too few to measure a verification threshold (it takes {MIN_GENUINE_PAIRS} pairs and two "
                        f"people): verifying with this run uses {NEUTRAL_NOTE} until it is calibrated on a labelled "
                        "dataset.")
    measured = calibrate(np.asarray(vectors, np.float32)[keep], kept_labels, metric="cosine")
    extras.update({THRESHOLDS_KEY: np.array([measured.thresholds[m] for m in METRICS], np.float32),
                   EER_KEY: np.float32(measured.eer["cosine"]), IMPOSTOR_KEY: np.int64(measured.n_impostor)})
    return extras, None


def _stored_thresholds(run: LoadedRun) -> tuple[dict[str, float], str]:
    """The run's measured default thresholds (metric → value; empty for neutral ones) and where they come from."""
    extras = run.extras
    if THRESHOLDS_KEY not in extras or METRICS_KEY not in extras:
        return {}, f"{NEUTRAL_NOTE}: this run was trained before fine-tuned runs measured their own"
    values = dict(zip((str(m) for m in extras[METRICS_KEY]), (float(v) for v in extras[THRESHOLDS_KEY])))
    genuine, impostor = int(extras.get(GENUINE_KEY, 0)), int(extras.get(IMPOSTOR_KEY, 0))
    if not all(np.isfinite(v) and v > 0 for v in values.values()) or set(values) != set(METRICS):
        return {}, (f"{NEUTRAL_NOTE}: this run's validation split had {genuine} same-person pair(s), too few "
                    f"(fewer than {MIN_GENUINE_PAIRS}) to measure its own")
    return values, (f"the equal-error rate of this run's validation faces in its fine-tuned space ({genuine} "
                    f"same-person and {impostor} different-people pairs, cosine EER {float(extras[EER_KEY]):.1%})")


def _base_backbone(run_id: str, run: LoadedRun) -> Backbone:
    """The pretrained backbone the run grew from, with the weights it was trained on, or one sentence why not."""
    name, weights_id = run.config.backbone, run.config.weights_id
    try:
        base = BACKBONES.get(name)
    except (RuntimeError, ValueError) as exc:
        raise ValueError(f"run {run_id} was fine-tuned from the {name} backbone, which cannot be used here: {exc}") from exc
    if weights_id and base.weights_id != weights_id:
        raise ValueError(f"run {run_id} was fine-tuned from {name} weights {weights_id}, but this machine has "
                         f"{base.weights_id}; its network only makes sense on the weights it grew from.")
    return base


class FinetunedBackbone(Backbone):
    """A fine-tuned run's network: the base backbone's crops and preprocessing, the run's embedding, cosine verdicts.

    A softmax-trained embedding is compared by angle, hence cosine; the default thresholds are the ones the run
    measured on its validation faces (:attr:`thresholds_note` says where they come from).
    """

    decision_metric = "cosine"
    fine_tunable = False  # fine-tune the base backbone instead: this one is already a run's result

    def __init__(self, run_id: str) -> None:
        run = load_run(run_id)  # FileNotFoundError / ValueError with one sentence for a missing or damaged run
        if not isinstance(run.head, FinetunedHead):
            raise ValueError(f"run {run_id} is a head-mode run (a {run.head.kind} head on {run.config.backbone or 'a'} "
                             "backbone's embeddings): it has no fine-tuned network to embed with; pick a run trained "
                             "in mode 'finetune', or that backbone itself.")
        self.run_id = run_id
        self.base = _base_backbone(run_id, run)
        self.head = run.head
        self.name = f"{RUN_PREFIX}{run_id}"
        self.input_size, self.margin = self.base.input_size, self.base.margin
        self.seconds_per_photo = self.base.seconds_per_photo
        self.embedding_dim = int(self.head.embed(np.zeros((0, self.input_size, self.input_size, 3), np.uint8)).shape[1])
        thresholds, self.thresholds_note = _stored_thresholds(run)
        self.default_thresholds = MappingProxyType(thresholds)
        saved = run.info.path / LAYERS_FILE
        self._weights_id = sha256_of(saved if saved.is_file() else run.info.path / KERAS_FILE)[:16]
        self._lock = threading.Lock()  # one Keras model shared by every session: one batch at a time

    def cache_key(self) -> str:
        # The run and the checksum of its trained layers name the network (the embedding cache is shared by every
        # workspace); the base's key names the crops.
        return f"{self.name}:{self.weights_id}:{self.base.cache_key()}"

    def align(self, image: np.ndarray, face: Face, rotate: bool = True, keep_steps: bool = False) -> AlignedFace:
        return self.base.align(image, face, rotate=rotate, keep_steps=keep_steps)

    def preprocess(self, crops: np.ndarray) -> np.ndarray:
        return self.base.preprocess(crops)

    def embed(self, crops: np.ndarray) -> np.ndarray:
        with self._lock:
            return self.head.embed(crops)


_loaded: OrderedDict[tuple[str, str], FinetunedBackbone] = OrderedDict()
_lock = threading.Lock()


def finetuned_backbone(run_id: str) -> FinetunedBackbone:
    """The shared wrapper of run ``run_id`` of the current workspace, loaded on first use.

    Keyed by the workspace's runs folder too, so one workspace never gets another's run; the :data:`KEPT` most
    recently used stay loaded. Loading happens under the lock, like the plug-in registries: two sessions asking
    at once load the network once.
    """
    key = (str(runs_dir()), run_id)
    with _lock:
        if key in _loaded:
            _loaded.move_to_end(key)
        else:
            _loaded[key] = FinetunedBackbone(run_id)
            while len(_loaded) > KEPT:
                _loaded.popitem(last=False)
        return _loaded[key]


def backbone_for(name: str) -> Backbone:
    """The backbone ``name`` chooses: a registered one, or a fine-tuned run as ``run:<run id>``."""
    return finetuned_backbone(name.removeprefix(RUN_PREFIX)) if name.startswith(RUN_PREFIX) else BACKBONES.get(name)


def pipeline(detector: str, backbone: str, align: bool = True, face_choice: str = DEFAULT_FACE_CHOICE,
             crop: str = DEFAULT_CROP) -> Pipeline:
    """detect → align → represent, where ``backbone`` may name a fine-tuned run (see :func:`backbone_for`)."""
    chosen = backbone_for(backbone)  # first: an unusable run is refused before the detector loads
    return Pipeline(DETECTORS.get(detector), chosen, align=align, face_choice=face_choice, crop=crop)


@dataclass(frozen=True)
class RunChoice:
    """A fine-tuned run offered where a backbone is chosen."""

    name: str  # "run:<run id>", for backbone_for
    label: str
    description: str


def run_choices() -> list[RunChoice]:
    """The current workspace's fine-tuned runs, newest first, as backbone choices (read without loading them)."""
    choices = []
    for info in list_runs():
        if info.head != FinetunedHead.kind:
            continue
        base = str(run_config(info).get("backbone") or "unknown backbone")
        choices.append(RunChoice(f"{RUN_PREFIX}{info.id}", f"Fine-tuned run: {info.name} ({base})",
                                 f"The network fine-tuned in run {info.id} from {base}: faces are cut as for {base}, "
                                 "embedded by the retrained network and compared by angle (cosine)."))
    return choices
