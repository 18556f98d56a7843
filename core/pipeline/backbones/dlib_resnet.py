"""dlib's ResNet face descriptor (128-d), the offline backbone: its model ships with face_recognition_models.

The network was trained on dlib's own "face chips": the 5-point landmarks fitted on the
face box, then a similarity transform (rotation, scale, shift) to 150×150 with 25 %
padding. Its embeddings are only good on such chips, so this backbone overrides
:meth:`Backbone.align` to cut them with dlib itself rather than with the generic aligner
(rotation off: the same chip, not rotated).
"""

from __future__ import annotations

import importlib.util
import logging
import math
import threading
import time
from types import MappingProxyType, ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from core.pipeline import _dlib_pool
from core.pipeline import weights as weight_files
from core.pipeline.alignment import ROTATION_OFF, AlignedFace, transform_point
from core.pipeline.backbones import BACKBONES, _dlib_onnx
from core.pipeline.backbones._dlib_dat import BLOCKS, DLIB_MEAN_RGB, model_path
from core.pipeline.backbones.base import Backbone
from core.pipeline.detection._dlib_landmarks import dlib_unavailable_reason, shape_for
from core.pipeline.detection.base import Face, check_rgb, order_eyes
from core.registry import HEAVY_IMPORTS, Entry

if TYPE_CHECKING:
    import keras

log = logging.getLogger(__name__)
CHIP_SIZE = 150
CHIP_PADDING = 0.25
BATCH_SIZE = 32


weight_files.register(weight_files.WeightFile(
    "dlib_face_recognition_resnet_model_v1.dat", "dlib-resnet",
    "bundled with the face_recognition_models package (no download)", model="dlib ResNet", locate=model_path,
    missing_hint="face_recognition_models is not installed (pip install face_recognition_models)"))

# dlib documents 0.6 as the euclidean threshold for its ResNet face descriptors.
DLIB_EUCLIDEAN_THRESHOLD = 0.6
# engine="auto" runs the ONNX graph: on 2 cores ~3 ms a chip, as fast as the Keras twin on TensorFlow and ~20×
# dlib-bin's C++ (BENCHMARKS.md), ready in 0.2 s where TensorFlow takes 6 s; dlib's own C++ (in worker processes)
# only for num_jitters, whose random jitter is dlib's, or where ONNX Runtime is not installed.
ENGINES = ("onnx", "dlib", "keras")


class DlibResNet(Backbone):
    """128-d dlib descriptors of 150×150 face chips.

    ``num_jitters`` averages that many randomly jittered copies per face (about 8× slower and no
    better on glint); ``flip_average`` (the default) averages each chip's descriptor with its
    mirror image's: on glint360k pairs (MTCNN boxes framed for dlib) it lowered the EER from
    3.32 % to 2.92 % and raised the AUC from 0.9957 to 0.9967 (benchmarks/bench_verification.py)
    for one extra descriptor per face.

    One network, three engines, all read from the same .dat and giving the same descriptors to 1e-4:
    ``engine="onnx"`` an ONNX Runtime graph (:mod:`._dlib_onnx`), ``engine="dlib"`` dlib's C++ in worker
    processes, ``engine="keras"`` the Keras twin (:mod:`._dlib_keras`, also the network
    :meth:`finetune_network` hands out; on TensorFlow, or JAX on a GPU). ``engine="auto"`` (the default) is
    "onnx", or "dlib" with ``num_jitters`` (see :data:`ENGINES`).
    """

    name = "dlib-resnet"
    input_size = CHIP_SIZE
    embedding_dim = 128
    fine_tunable = True
    # dlib documents 0.6 euclidean; its descriptors are about 1.5 long, so that is about 0.4 between
    # unit vectors and 0.4²/2 = 0.08 cosine (calibration on five_celebrity_faces lands near all three).
    decision_metric = "euclidean"
    default_thresholds = MappingProxyType({"euclidean": DLIB_EUCLIDEAN_THRESHOLD, "euclidean_l2": 0.4, "cosine": 0.08})
    preference = 1
    seconds_per_photo = 0.05
    # Barcodes: 99 % of descriptor values lie within ±0.35 and 99 % of the slot differences between two different
    # people below 0.2, so those are the fixed scales (same-person differences: 99 % below 0.12, mean 0.034, against
    # 0.059 for different people). Measured with dlib-hog + this backbone (flip-averaged, aligned) on every photo of
    # five_celebrity_faces (111 faces: |value| p99 0.348, impostor |difference| p99 0.194) and
    # glint360k_celebrity_sample (413 faces: 0.357 and 0.192); descriptors about 1.49 long.
    barcode_limits = (0.35, 0.2)
    input_description = "(RGB pixel − dlib's mean colour) / 256"
    # Whole fine-tune epochs (augmentation, the frozen levels' forward pass, validation) on a 2-core CPU: 1,116
    # images in 28.6 s in `python -m core train five_celebrity_faces --mode finetune` (the bare training step,
    # benchmarks/bench_dlib_keras.py --finetune: 135–143 images/s).
    finetune_images_per_second = 35.0
    finetune_blocks = BLOCKS  # the stem, dlib's levels 4 → 0, then the 128-d "descriptor" layer
    # Chosen on validation splits only: on the unnormalised descriptors the new softmax's logits start small, so
    # the warm-up needs a high rate; the pretrained layers then move at 1e-4 (1e-3 unsettled them); light dropout
    # (0.2) for a 128-d embedding that has little to spare. Groups unfrozen below the descriptor: 0, the best
    # mean validation accuracy over three seeds on glint360k_celebrity_sample (99.3 %, against 97.8 % with one
    # level and 98.2 % with two; benchmarks/bench_finetune.py) — with about 12 training photos a person, more moves overfit.
    finetune_dropout = 0.2
    finetune_defaults = MappingProxyType({"epochs": 12, "batch_size": 16, "warmup_epochs": 4, "finetune_blocks": 0,
                                          "learning_rate": 0.1, "finetune_learning_rate": 1e-4})

    def __init__(self, num_jitters: int = 0, flip_average: bool = True, engine: str = "auto") -> None:
        import dlib  # noqa: F401 - fail here, with the registry's message, when dlib is missing (it cuts the chips)

        if int(num_jitters) != num_jitters or num_jitters < 0:
            raise ValueError(f"num_jitters must be a whole number ≥ 0, got {num_jitters}")
        if engine not in ("auto", *ENGINES):
            raise ValueError(f"unknown dlib-resnet engine '{engine}'; choose one of: auto, {', '.join(ENGINES)}")
        if engine == "keras" and num_jitters:
            raise ValueError("num_jitters needs engine='dlib': the random jitter is dlib's own.")
        self.num_jitters = int(num_jitters)
        self.flip_average = bool(flip_average)
        self.engine = engine
        # The engine that describes: ``engine``, or what "auto" stands for here (decided once, not on every batch).
        self._engine = engine if engine != "auto" else (
            "onnx" if not self.num_jitters and importlib.util.find_spec("onnxruntime") is not None else "dlib")
        self._path = model_path()
        self._weights_id = weight_files.sha256_of(self._path)[:16]
        self._model: Any = None  # in-process copy, loaded only when there are no worker processes
        self._lock = threading.Lock()
        self._warmed = False  # the ONNX session was asked for ahead of time (once is enough: it stays open)
        if self._engine == "dlib":
            _dlib_pool.pool_for(self._job)  # start the workers now: they load the model while the app goes on

    def warm(self, faces: int) -> None:
        """Start what describing will use while the detector works: dlib's workers, or the ONNX session (the first
        time, built from the .dat: ~1 s) on a background thread."""
        if self._engine == "dlib":
            _dlib_pool.pool_for(self._job)
        elif self._engine == "onnx" and not self._warmed:
            self._warmed = True
            threading.Thread(target=self._open_session, name="facelab-dlib-onnx", daemon=True).start()

    def _open_session(self) -> None:
        try:
            _dlib_onnx.load(self._path)
        except Exception:  # noqa: BLE001 - only a head start: the first description opens it again and says why
            log.debug("opening dlib's ONNX graph ahead of time failed", exc_info=True)

    def cache_key(self) -> str:
        # The same for every engine: their descriptors agree to 1e-4 (tests/test_dlib_keras.py, on real chips),
        # so embeddings cached by one serve the other.
        return f"{self.name}:{self.weights_id}:jitter{self.num_jitters}:{'flip' if self.flip_average else 'noflip'}"

    def align(self, image: np.ndarray, face: Face, rotate: bool = True, keep_steps: bool = False) -> AlignedFace:
        """dlib's face chip; with ``rotate=False`` the same chip (same centre, same scale) not rotated.

        ``angle`` is dlib's own estimate from all five points (it can differ from the bare eye
        line by a few degrees); ``rotated`` and ``crop_box`` show that same rotation, about the
        chip's centre, so the Verify page can draw the cut. Only the rotation depends on
        ``rotate``: the framing that dlib's descriptor was trained on stays.
        """
        import cv2
        import dlib

        check_rgb(image)
        shape = shape_for(image, face.landmark_box)
        details = dlib.get_face_chip_details(shape, size=CHIP_SIZE, padding=CHIP_PADDING)
        if not rotate:
            details = dlib.chip_details(details.rect, dlib.chip_dims(CHIP_SIZE, CHIP_SIZE), 0.0)
        chip = dlib.extract_image_chip(np.ascontiguousarray(image), details)
        points = [(float(p.x), float(p.y)) for p in shape.parts()]
        eyes = order_eyes(*(((a[0] + b[0]) / 2, (a[1] + b[1]) / 2) for a, b in (points[0:2], points[2:4])))
        angle = math.degrees(details.angle)
        rect = details.rect
        centre = ((rect.left() + rect.right()) / 2, (rect.top() + rect.bottom()) / 2)
        side = rect.right() - rect.left()
        matrix = cv2.getRotationMatrix2D(centre, angle, 1.0)
        rotated = None
        if keep_steps:
            height, width = image.shape[:2]
            rotated = image if not rotate else cv2.warpAffine(
                image, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
        return AlignedFace(
            crop=np.ascontiguousarray(chip, dtype=np.uint8),
            aligned=rotate,
            angle=angle,
            eyes=eyes,
            rotated=rotated,
            reason="" if rotate else ROTATION_OFF,
            matrix=matrix,
            crop_box=(round(centre[0] - side / 2), round(centre[1] - side / 2), round(side), round(side)),
            rotated_eyes=(transform_point(matrix, eyes[0]), transform_point(matrix, eyes[1])),
        )

    def preprocess(self, crops: np.ndarray) -> np.ndarray:
        """What dlib's input layer makes of a chip (the network itself takes raw 0–255 chips)."""
        return (np.asarray(crops, dtype=np.float32) - np.asarray(DLIB_MEAN_RGB, np.float32)) / 256.0

    def _describe(self, chips: np.ndarray) -> np.ndarray:
        """Descriptors of (N, 150, 150, 3) chips by this backbone's engine (dlib: in the worker processes if any)."""
        if self._engine == "onnx":
            return _dlib_onnx.embed(chips, self._path)
        if self._engine == "keras":
            return _twin().embed(chips, self._path)
        return _dlib_pool.in_workers(self._job, lambda pool: pool.describe(chips, self.num_jitters),
                                     lambda: self._describe_here(chips))

    @property
    def _job(self) -> _dlib_pool.Job:
        return ("describe", str(self._path))

    def _describe_here(self, chips: np.ndarray) -> np.ndarray:
        """One dlib call per chip in this process, yielding between calls.

        dlib holds the GIL for a whole call: a 32-chip batch froze every other browser session's
        page for seconds (Python work 90× slower). Per-chip calls cost dlib nothing measurable on
        a CPU, and ``time.sleep(0)`` lets the other threads run between them.
        """
        import dlib

        vectors = []
        with self._lock:
            if self._model is None:
                self._model = dlib.face_recognition_model_v1(str(self._path))
            for chip in chips:
                vectors.append(self._model.compute_face_descriptor(np.ascontiguousarray(chip), num_jitters=self.num_jitters))
                time.sleep(0)
        return np.asarray(vectors, dtype=np.float32).reshape(len(chips), self.embedding_dim)

    def embed(self, crops: np.ndarray) -> np.ndarray:
        crops = np.asarray(crops)
        if crops.dtype != np.uint8 or crops.ndim != 4 or crops.shape[1:] != (CHIP_SIZE, CHIP_SIZE, 3):
            raise ValueError(f"dlib-resnet needs uint8 face chips of shape (N, {CHIP_SIZE}, {CHIP_SIZE}, 3), "
                             f"got {crops.dtype} {crops.shape}")
        out = np.empty((len(crops), self.embedding_dim), dtype=np.float32)
        for start in range(0, len(crops), BATCH_SIZE):  # batches, so other callers' faces get their turn between them
            batch = crops[start:start + BATCH_SIZE]
            if self.flip_average:
                both = self._describe(np.concatenate([batch, batch[:, :, ::-1]]))
                out[start:start + len(batch)] = (both[:len(batch)] + both[len(batch):]) / 2
            else:
                out[start:start + len(batch)] = self._describe(batch)
        return out

    def finetune_network(self) -> keras.Model:
        """A new Keras twin of the network (raw 0–255 RGB chips in, the 128-d "descriptor" out) to fine-tune."""
        return _twin().network(self._path)


def _twin() -> ModuleType:
    """The Keras twin's module, imported on first use (it imports Keras, which the other engines never need) under
    HEAVY_IMPORTS: a training job's thread may be importing TensorFlow at the same time."""
    with HEAVY_IMPORTS:
        from core.pipeline.backbones import _dlib_keras  # lazy: it imports Keras (the Dataset page must not load it)
    return _dlib_keras


def _available() -> str | None:
    return dlib_unavailable_reason("face_recognition_model_location")


BACKBONES.register(Entry(
    name=DlibResNet.name,
    label="dlib ResNet (128-d)",
    factory=DlibResNet,
    description="dlib's ResNet-34-style face descriptor on 5-point aligned 150×150 chips; offline, no download; "
                "fine-tunable through its Keras twin.",
    available=_available,
))
