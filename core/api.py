"""FaceLab in a notebook: seven functions over the same services the pages and the CLI use.

    import core
    image = core.load_image("alice.jpg")
    faces = core.detect(image)                      # every face, largest first
    vectors = core.embed(image)                     # one embedding per face
    verdict = core.verify("alice.jpg", "alice2.jpg")
    calibration = core.calibrate("my_dataset")      # thresholds learnt on labelled photos
    run = core.train("my_dataset", head="softmax")  # a saved run
    photos = core.predict(run.id, ["group.jpg"])    # every face named, strangers "unknown"

Each function takes the detector and backbone by name (defaults: the suggested detector and
the most preferred backbone usable on this machine); models load once per process.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from core.compare.calibration import Calibration
from core.compare.verification import Verdict
from core.images import encode_png, read_file
from core.images import load_image as _decode
from core.pipeline.alignment import DEFAULT_CROP
from core.pipeline.backbones import BACKBONES, default_backbone
from core.pipeline.detection import DEFAULT_DETECTOR, DETECTORS
from core.pipeline.detection.base import Face
from core.pipeline.embeddings import Pipeline
from core.pipeline.face_choice import DEFAULT_FACE_CHOICE
from core.runs import RunInfo
from core.services import calibrate as calibrate_service
from core.services import verify as verify_service
from core.services.gallery import build_gallery
from core.services.predict import PhotoPrediction, predictor_for_run
from core.services.train import train_on_dataset
from core.training.config import TrainConfig

Image = np.ndarray | str | Path | bytes  # a decoded RGB array, a file path or the file's bytes

__all__ = ["calibrate", "detect", "embed", "load_image", "pipeline", "predict", "train", "verify"]


def pipeline(detector: str = DEFAULT_DETECTOR, backbone: str | None = None, align: bool = True,
             face_choice: str = DEFAULT_FACE_CHOICE, crop: str = DEFAULT_CROP) -> Pipeline:
    """detect → align → represent with the named plug-ins (shared instances, built on first use); ``face_choice``
    (see :mod:`core.pipeline.face_choice`) decides which face of a photo comes first, ``crop`` which square is cut
    (see :data:`core.pipeline.alignment.CROPS`; ``align=False`` leaves that square unrotated)."""
    return Pipeline(DETECTORS.get(detector), BACKBONES.get(backbone or default_backbone()), align=align,
                    face_choice=face_choice, crop=crop)


def load_image(source: Image) -> np.ndarray:
    """An EXIF-upright RGB uint8 array; a clear ``ImageError`` for anything that is not a usable photo."""
    return source if isinstance(source, np.ndarray) else _decode(source)


def detect(image: Image, detector: str = DEFAULT_DETECTOR) -> list[Face]:
    """Every face the detector finds (box, score, eyes and landmarks when it gives them), largest first."""
    return DETECTORS.get(detector).detect(load_image(image))


def embed(image: Image, detector: str = DEFAULT_DETECTOR, backbone: str | None = None,
          align: bool = True) -> np.ndarray:
    """One embedding per face, the chosen face first: shape (faces, dimensions); (0, dimensions) without a face."""
    chosen = pipeline(detector, backbone, align)
    crops = [aligned.crop for _, aligned in chosen.faces(load_image(image))]
    if not crops:
        return np.zeros((0, chosen.backbone.embedding_dim), np.float32)
    return np.asarray(chosen.backbone.embed(np.stack(crops)), np.float32)


def _encoded(image: Image) -> bytes:
    """The bytes the verify service reads (it decodes and names each photo itself)."""
    if isinstance(image, bytes):
        return image
    if isinstance(image, np.ndarray):
        return encode_png(image)
    return read_file(image)


def verify(image1: Image, image2: Image, detector: str = DEFAULT_DETECTOR, backbone: str | None = None,
           align: bool = True, calibration: Calibration | None = None) -> Verdict:
    """Same person? The chosen face of each photo, compared with ``calibration`` or else the newest sound one
    made with this pipeline (unsound ones are skipped with a warning saying why), or else the backbone's
    documented thresholds (``verdict.threshold_source`` says which)."""
    chosen = pipeline(detector, backbone, align)
    first, second = verify_service.analyse_photos(chosen, [(_encoded(image1), "image1"), (_encoded(image2), "image2")])
    if calibration is None:
        choice = calibrate_service.choose_calibration(chosen)
        for note in choice.notes:
            warnings.warn(note, stacklevel=2)
        calibration = choice.calibration
    return verify_service.compare(chosen, first.face(0), second.face(0), calibration)


def calibrate(dataset: str | Path, detector: str = DEFAULT_DETECTOR, backbone: str | None = None,
              align: bool = True, target_far: float | None = None) -> Calibration:
    """Thresholds learnt on a labelled dataset folder's genuine and impostor pairs (saved for this pipeline)."""
    chosen = pipeline(detector, backbone, align)
    return calibrate_service.calibrate_gallery(chosen, build_gallery(chosen, dataset), target_far)


def train(dataset: str | Path, detector: str = DEFAULT_DETECTOR, backbone: str | None = None, align: bool = True,
          name: str | None = None, **settings: Any) -> RunInfo:
    """Train and save a run on a dataset folder; ``settings`` are :class:`TrainConfig` fields (head, epochs, …)."""
    config = TrainConfig(**settings)
    return train_on_dataset(dataset, pipeline(detector, backbone, align), config, name=name).info


def predict(run: str, photos: Sequence[str | Path | bytes]) -> list[PhotoPrediction]:
    """Every face of every photo named by a saved run (its own detector and backbone), strangers as unknown."""
    return predictor_for_run(run).predict(list(photos))
