"""MTCNN (the ``mtcnn`` package): a cascade of three small CNNs giving boxes and five landmarks.

The module is not called ``mtcnn.py`` so that nobody reading ``import mtcnn`` inside this
package has to wonder whether it means the package or this module.
"""

from __future__ import annotations

import importlib.util
import threading
from typing import Any

import cv2
import numpy as np

from core.pipeline.detection import DETECTORS
from core.pipeline.detection.base import BoxMap, Detector, Face, order_eyes
from core.registry import HEAVY_IMPORTS, Entry

PYRAMID_MIN_FACE = 20  # the largest min_face_size the mtcnn package's pyramid handles on any image size


class MtcnnDetector(Detector):
    """The suggested default: finds nearly every face, with eye landmarks for alignment, at a few hundred ms a photo."""

    name = "mtcnn"
    seconds_per_photo = 0.35
    # MTCNN boxes are taller than dlib's squares and sit higher. Measured on the 498 faces that
    # both MTCNN and dlib HOG found in five_celebrity_faces and orl_att_faces (medians): dlib's
    # centre is 0.062 × height lower, its side 1.086 × width or 0.843 × height. Fitting dlib's
    # landmarks on the mapped box lowered the dlib-resnet EER on glint360k's tight crops from 3.52 %
    # to 2.92 % and left five_celebrity and ORL as they were (benchmarks/bench_verification.py).
    dlib_box_map = BoxMap(dx=0.007, dy=0.062, side_w=1.086, side_h=0.843)

    def __init__(self, min_confidence: float = 0.8, min_face_size: int = 20) -> None:
        if not 0.0 <= min_confidence < 1.0:
            raise ValueError(f"mtcnn min_confidence must be in [0, 1), got {min_confidence}.")
        if int(min_face_size) < 12:
            raise ValueError(f"mtcnn min_face_size must be at least 12 pixels (its smallest window), got {min_face_size}.")
        super().__init__(min_confidence=float(min_confidence), min_face_size=int(min_face_size))
        self._model = None  # built by load(): TensorFlow and three networks, half a minute on a busy machine
        self._lock = threading.Lock()  # one TensorFlow model shared by every browser session

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def load(self) -> None:
        with self._lock:
            if self._model is None:
                with HEAVY_IMPORTS:
                    from mtcnn import MTCNN

                self._model = _as_graphs(MTCNN())

    def _detect(self, image: np.ndarray) -> list[Face]:
        return self._detect_batch([image])[0]

    def _detect_batch(self, images: list[np.ndarray]) -> list[list[Face]]:
        """Images of one size in one call: the networks then run on batches (two 640×480 photos: 0.49 s, not 0.70 s).

        Only same-sized images share a call: mtcnn pads a mixed batch to one size, which shifts
        its pyramid and moved boxes by up to 10 pixels on five_celebrity photos; a photo's faces
        should not depend on which other photos came with it (same-sized ones differ by float
        rounding, at most a pixel).
        """
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for index, image in enumerate(images):
            by_shape.setdefault(image.shape, []).append(index)
        found: list[list[Face]] = [[] for _ in images]
        for indices in by_shape.values():
            for index, faces in zip(indices, self._detect_same_size([images[i] for i in indices])):
                found[index] = faces
        return found

    def _detect_same_size(self, images: list[np.ndarray]) -> list[list[Face]]:
        """One mtcnn call.

        The mtcnn package sizes its image pyramid as if ``min_face_size`` were 20 and, above about
        that, asks P-Net for levels smaller than its 12-pixel window and fails. Detecting faces of
        at least N pixels is the same as detecting faces of 20 pixels in the image shrunk by 20/N,
        so larger minimums shrink the image instead (which is also faster). ``fit_to_image=False``
        keeps boxes that run off the image whole, so they can be framed for dlib before clipping.
        """
        shrink = min(1.0, PYRAMID_MIN_FACE / self.settings["min_face_size"])
        if shrink < 1.0:
            images = [cv2.resize(image, (max(1, round(image.shape[1] * shrink)), max(1, round(image.shape[0] * shrink))),
                                 interpolation=cv2.INTER_AREA) for image in images]
        self.load()
        with self._lock:
            found = self._model.detect_faces(
                [np.ascontiguousarray(image) for image in images], fit_to_image=False,
                min_face_size=min(PYRAMID_MIN_FACE, self.settings["min_face_size"]),
                threshold_onet=self.settings["min_confidence"])
        return [[_face(item).scaled(shrink) for item in per_image] for per_image in found]


def _as_graphs(model: Any) -> Any:
    """The mtcnn model with each stage's network run as one TensorFlow graph instead of layer by layer.

    The package calls its three Keras networks eagerly, P-Net once per pyramid level: the Python
    overhead of ~10 layer calls each was most of the time (40 five_celebrity photos: 6.9 s eager,
    1.8 s as graphs, the same boxes, scores and landmarks to the last digit). Each graph is traced
    once: its input signature leaves the batch (and, for the fully convolutional P-Net, the image
    size) open, so no photo size or batch size traces it again.
    """
    import tensorflow as tf
    from mtcnn.stages import StageONet, StagePNet, StageRNet

    inputs = {StagePNet: None, StageRNet: 24, StageONet: 48}  # the side each network takes (None: any)
    for stage in model.stages:
        side = inputs[type(stage)]
        network = stage._model  # noqa: SLF001 - the package keeps each stage's network there (mtcnn 1.0 pinned)
        spec = tf.TensorSpec([None, side, side, 3], tf.float32)
        stage._model = tf.function(lambda x, network=network: network(x, training=False), input_signature=[spec])  # noqa: SLF001
    return model


def _face(item: dict) -> Face:
    """A :class:`Face` from one of mtcnn's JSON records (box x, y, w, h; confidence; five keypoints)."""
    points = {name: (float(p[0]), float(p[1])) for name, p in item["keypoints"].items()}
    left, right = order_eyes(points["left_eye"], points["right_eye"])
    points["left_eye"], points["right_eye"] = left, right
    return Face(box=tuple(int(round(float(v))) for v in item["box"]),  # type: ignore[arg-type]
                score=float(item["confidence"]), left_eye=left, right_eye=right, landmarks=points)


def _unavailable() -> str | None:
    """Checked without importing mtcnn, which would load TensorFlow just to list the detectors."""
    for package in ("mtcnn", "tensorflow"):
        if importlib.util.find_spec(package) is None:
            return f"the '{package}' package is not installed."
    return None


DETECTORS.register(Entry(
    name="mtcnn",
    label="MTCNN",
    factory=MtcnnDetector,
    description=(
        "Multi-task cascaded CNN (the mtcnn package, TensorFlow): the suggested default — it found a face in "
        "116 of the 117 five_celebrity photos, with five landmarks (eyes, nose, mouth corners) so every face can "
        "be aligned. Slower than Haar or dlib HOG on a CPU. Settings: min_confidence (default 0.8: at 0.9 a face behind "
        "tinted glasses scoring 0.84 was lost), "
        "min_face_size (px)."
    ),
    available=_unavailable,
))
