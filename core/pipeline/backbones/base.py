"""The contract every embedding backbone fulfils."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import numpy as np

from core.pipeline.alignment import AlignedFace, align_face
from core.pipeline.detection.base import Face


class Backbone(ABC):
    """Turns aligned face crops into embedding vectors.

    Subclasses set the class attributes and implement ``embed``; those that need
    their own alignment (dlib's 5-point chip) override ``align``. A fine-tunable one also
    declares its Keras network and the groups of layers fine-tuning may unfreeze: that is all
    core.training.finetune knows about it.
    """

    name: str = "?"
    input_size: int = 224  # square crop side in pixels
    embedding_dim: int = 0
    fine_tunable: bool = False  # True when finetune_network() gives a trainable Keras model
    margin: float = 0.2  # crop margin around the detector box, as a fraction of its size
    # What the rest of FaceLab reads from the class without building the model:
    decision_metric: str = "cosine"  # the metric an uncalibrated verdict decides on
    default_thresholds: Mapping[str, float] = MappingProxyType({})  # per metric; neutral ones fill the gaps
    seconds_per_photo: float = 0.3  # rough CPU cost of one face's embedding, for the Train page's first estimate
    preference: int = 10  # the default backbone is the usable one with the lowest preference
    # The Verify page's barcodes: (value limit, difference limit) measured on real photos, so every photo is drawn on
    # one fixed scale; None: vectors drawn divided by their length on a generic scale (core.compare.barcode).
    barcode_limits: tuple[float, float] | None = None
    # What ``preprocess`` hands the network, for the Verify page's step 4: its channels in order, and in words.
    input_channels: tuple[str, ...] = ("R", "G", "B")
    input_description: str = "RGB pixels 0–255"
    # Fine-tuning (read from the class, without building the model): the CPU pace for the Train page's estimate,
    # the names of the network's layers with weights grouped bottom → top (fine-tuning always trains the top
    # group and ``TrainConfig.finetune_blocks`` groups below it), the dropout before the new identity layer and
    # the TrainConfig settings to start from (each fine-tunable backbone declares its own, measured).
    finetune_images_per_second: float = 1.0
    finetune_blocks: tuple[tuple[str, ...], ...] = ()
    finetune_dropout: float = 0.2
    finetune_defaults: Mapping[str, int | float] = MappingProxyType({
        "epochs": 10, "batch_size": 16, "warmup_epochs": 2, "finetune_blocks": 1, "learning_rate": 1e-3})

    _weights_id: str = "builtin"  # subclasses set the checksum of the weights they loaded

    @property
    def weights_id(self) -> str:
        """Checksum (or other identity) of the loaded weights; part of every cache key."""
        return self._weights_id

    def cache_key(self) -> str:
        return f"{self.name}:{self.weights_id}"

    def warm(self, faces: int) -> None:
        """About ``faces`` faces are coming: start loading, in the background, what describing them will use.

        Called by the pipeline as it starts detecting, so the model loads while the detector works; a no-op for
        backbones that load whole when built.
        """

    def align(self, image: np.ndarray, face: Face, rotate: bool = True, keep_steps: bool = False) -> AlignedFace:
        """This backbone's own crop at its input size, eyes levelled when ``rotate``.

        With ``rotate=False`` the crop is the same square (same centre, same size), only not
        rotated, so switching rotation off measures rotation alone. Here that square is the
        detector box with ``margin``; backbones with their own framing override this.
        """
        return self.box_crop(image, face, rotate=rotate, keep_steps=keep_steps)

    def box_crop(self, image: np.ndarray, face: Face, rotate: bool = False, keep_steps: bool = False) -> AlignedFace:
        """The detector box squared with ``margin`` at this backbone's input size (the crop setting "box").

        Not an override point: it is the same framing for every backbone, whatever its own crop is.
        """
        return align_face(image, face, size=self.input_size, margin=self.margin, rotate=rotate, keep_steps=keep_steps)

    def preprocess(self, crops: np.ndarray) -> np.ndarray:
        """Network input for uint8 RGB crops (N, S, S, 3), as ``input_description`` says; shown on the Verify page."""
        return crops.astype(np.float32)

    @abstractmethod
    def embed(self, crops: np.ndarray) -> np.ndarray:
        """Embeddings (N, embedding_dim) float32 for uint8 RGB crops (N, S, S, 3)."""

    def finetune_network(self) -> Any:
        """A new ``keras.Model`` on every call (training it leaves this backbone untouched) holding the pretrained
        weights: raw RGB crops (N, S, S, 3) valued 0–255 in, the backbone's preprocessing inside, the embedding out.

        Typed ``Any``: naming Keras here, even for type checkers only, would count as loading it with every page.
        """
        raise NotImplementedError(f"the {self.name} backbone cannot be fine-tuned: it has no trainable Keras network.")
