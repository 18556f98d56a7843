"""VGG-Face: the VGG16 network trained on 2622 identities, rebuilt in Keras 3 and fed the published weights.

The topology and layer names follow keras-vggface's ``VGG16`` model so its h5 files load by
name; the sefiks/deepface file (a Sequential model whose fully connected layers are
convolutions) is mapped on in order. Keras 3 forbids ``/`` in layer names, so the
activations keras-vggface called ``fc6/relu`` … ``fc8/softmax`` are ``fc6_relu`` …
``fc8_softmax`` here; they hold no weights, so the files are unaffected.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np

from core.pipeline import weights as weight_files
from core.pipeline.backbones import BACKBONES
from core.pipeline.backbones._vggface_mean import MEAN_BGR
from core.pipeline.backbones.base import Backbone
from core.pipeline.weights import WeightsError
from core.registry import Entry

if TYPE_CHECKING:
    import keras

CONV_BLOCKS = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))  # (filters, convolutions) per block
CONV_LAYERS = tuple(f"conv{block}_{i}" for block, (_, count) in enumerate(CONV_BLOCKS, 1) for i in range(1, count + 1))
TOP_LAYERS = ("fc6", "fc7", "fc8")
# Embedding choice → (layer whose output is the embedding, its size with the published top).
EMBEDDING_LAYERS = {"fc8": ("fc8", 2622), "fc7": ("fc7_relu", 4096)}
BATCH_SIZE = 32
INPUT_SIZE = 224
ENV_VGGFACE = "FACELAB_VGGFACE_WEIGHTS"
_RCMALLI = "https://github.com/rcmalli/keras-vggface/releases/download/v2.0/"
_KERAS_VGGFACE_CACHE = (".keras/models/vggface",)  # keras-vggface's own download folder: reuse what it fetched


def _is_rcmalli(layers: Mapping[str, Any], top: bool) -> bool:
    return "conv1_1" in layers and ("fc8" in layers) == top


# The files this backbone runs on, preferred first (the no-top file is for fine-tuning only). keras-vggface
# files hold layers by name (conv1_1…fc8); deepface's is a Sequential layout without those names.
WEIGHT_FILES = (
    weight_files.WeightFile(
        "rcmalli_vggface_tf_vgg16.h5", "vggface16", "VGG-Face VGG16 with the 2622-identity top (keras-vggface v2.0, "
        "layers by name)", model="VGG-Face", url=_RCMALLI + "rcmalli_vggface_tf_vgg16.h5", size_hint=580_000_000,
        min_layers=16, env=ENV_VGGFACE, cache_dirs=_KERAS_VGGFACE_CACHE,
        layers_match=lambda layers: _is_rcmalli(layers, top=True)),
    weight_files.WeightFile(
        "vgg_face_weights.h5", "vggface16", "VGG-Face as in the sefiks/deepface tutorials (Sequential layout, fc as "
        "convolutions)", model="VGG-Face",
        url="https://github.com/serengil/deepface_models/releases/download/v1.0/vgg_face_weights.h5",
        size_hint=580_000_000, min_layers=16, cache_dirs=_KERAS_VGGFACE_CACHE,
        layers_match=lambda layers: "conv1_1" not in layers and len(layers) >= 16),
    weight_files.WeightFile(
        "rcmalli_vggface_tf_notop_vgg16.h5", "vggface16", "VGG-Face VGG16 convolutions only (keras-vggface v2.0), for "
        "fine-tuning", model="VGG-Face", url=_RCMALLI + "rcmalli_vggface_tf_notop_vgg16.h5", size_hint=59_000_000,
        min_layers=13, runs_backbone=False, cache_dirs=_KERAS_VGGFACE_CACHE,
        layers_match=lambda layers: _is_rcmalli(layers, top=False)),
)
weight_files.register(*WEIGHT_FILES)


def build_vggface16(include_top: bool = True, input_size: int = INPUT_SIZE, *, classes: int = 2622,
                    fc_units: int = 4096) -> keras.Model:
    """The VGG-Face VGG16 as a functional Keras model, with randomly initialised weights.

    ``classes`` and ``fc_units`` exist for reduced test models and new heads; the published
    weights need the defaults and ``input_size`` 224 (fc6 sees pool5's 7×7×512).
    """
    import keras

    if input_size < 32:
        raise ValueError(f"input_size must be at least 32 (five 2×2 poolings), got {input_size}")
    inputs = keras.Input(shape=(input_size, input_size, 3), name="input")
    x = inputs
    names = iter(CONV_LAYERS)
    for block, (filters, count) in enumerate(CONV_BLOCKS, 1):
        for _ in range(count):
            x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu", name=next(names))(x)
        x = keras.layers.MaxPooling2D(2, strides=2, name=f"pool{block}")(x)
    if include_top:
        x = keras.layers.Flatten(name="flatten")(x)
        x = keras.layers.Dense(fc_units, name="fc6")(x)
        x = keras.layers.Activation("relu", name="fc6_relu")(x)
        x = keras.layers.Dense(fc_units, name="fc7")(x)
        x = keras.layers.Activation("relu", name="fc7_relu")(x)
        x = keras.layers.Dense(classes, name="fc8")(x)
        x = keras.layers.Activation("softmax", name="fc8_softmax")(x)
    return keras.Model(inputs, x, name="vggface_vgg16")


def preprocess_input(crops: np.ndarray) -> np.ndarray:
    """keras-vggface preprocessing version 1: RGB → BGR, then subtract the per-channel mean (float32)."""
    bgr = np.asarray(crops, dtype=np.float32)[..., ::-1]
    return bgr - np.asarray(MEAN_BGR, dtype=np.float32)


def _weighted_layers(model: keras.Model) -> list[Any]:
    present = {layer.name: layer for layer in model.layers}
    return [present[name] for name in (*CONV_LAYERS, *TOP_LAYERS) if name in present]


def _match(path: Path, layer: Any, source: str, datasets: list[Any]) -> list[tuple[Any, tuple[int, ...]]]:
    """Pair a file layer's datasets with the model layer's weights, checking every shape before any is read.

    A convolution kernel may feed a Dense layer of the same size (the sefiks file's fc6–fc8).
    """
    expected = [tuple(w.shape) for w in layer.weights]
    if len(datasets) != len(expected):
        raise WeightsError(f"{path.name}: layer {source} has {len(datasets)} weight arrays, {layer.name} "
                           f"needs {len(expected)}.")
    pairs = []
    for dataset, shape in zip(datasets, expected):
        got = tuple(dataset.shape)
        reshapable = len(got) == 4 and len(shape) == 2 and int(np.prod(got)) == int(np.prod(shape)) \
            and got[-1] == shape[-1]
        if got != shape and not reshapable:
            raise WeightsError(f"{path.name}: layer {source} has weights of shape {got} where {layer.name} needs "
                               f"{shape}; the file is for a different model or input size.")
        pairs.append((dataset, shape))
    return pairs


def load_weights(model: keras.Model, path: str | Path) -> str:
    """Load a VGG-Face h5 file into ``model``; returns the layout found ("by-name" or "sequential").

    keras-vggface files (Keras-2 weights layout, a group per layer name) load by name; a file
    without ``conv1_1`` is taken as the sefiks Sequential layout and its weighted layers are
    mapped in order onto conv1_1…conv5_3 (and fc6…fc8, reshaping convolution kernels). Every
    layer and shape is checked before any weight is read, so a wrong file fails with a message
    naming it instead of leaving random weights behind. A read error half-way (damaged file)
    leaves the model partly loaded: discard it.
    """
    path = Path(path)
    targets = _weighted_layers(model)
    with weight_files.open_weights_h5(path) as group:
        layers = weight_files.layer_weights(group, path)
        if "conv1_1" in layers:
            layout = "by-name"
            missing = [layer.name for layer in targets if layer.name not in layers]
            if missing:
                hint = " (it is the no-top file; the full model needs rcmalli_vggface_tf_vgg16.h5)" \
                    if set(missing) <= set(TOP_LAYERS) else ""
                raise WeightsError(f"{path.name}: no weights for layer(s) {', '.join(missing)}{hint}.")
            sources = [(layer.name, layers[layer.name]) for layer in targets]
        else:
            layout = "sequential"
            ordered = list(layers.items())
            if len(ordered) < len(targets) or (len(ordered) > len(targets) and "fc8" in {t.name for t in targets}):
                raise WeightsError(f"{path.name}: has {len(ordered)} layers with weights and no conv1_1 layer; "
                                   f"a VGG-Face file has {len(CONV_LAYERS) + len(TOP_LAYERS)}.")
            sources = ordered[:len(targets)]
        plan = [(layer, _match(path, layer, source, datasets)) for layer, (source, datasets) in zip(targets, sources)]
        try:
            for layer, pairs in plan:
                layer.set_weights([np.asarray(dataset, dtype=np.float32).reshape(shape) for dataset, shape in pairs])
        except OSError as exc:
            raise WeightsError(f"{path.name}: damaged weights data ({exc}); download the file again.") from exc
    return layout


class VGGFace16(Backbone):
    """VGG-Face embeddings: fc8 (2622-d, before the softmax) or fc7 (4096-d, after its ReLU).

    ``weights=None`` finds the published file (see :mod:`core.pipeline.weights`); a path loads that file;
    ``"random"`` builds untrained weights for benchmarks and tests only and says so in ``is_random``.
    """

    name = "vggface16"
    input_size = INPUT_SIZE
    fine_tunable = True
    # VGG-Face's fc8 vectors are usually compared by cosine at about 0.4, i.e. √0.8 ≈ 0.89 between unit vectors.
    decision_metric = "cosine"
    default_thresholds = MappingProxyType({"cosine": 0.4, "euclidean_l2": 0.89})
    preference = 0
    seconds_per_photo = 0.35
    # No barcode_limits: fc8's value spread was never measured (no weights offline), so its 2622 slots are drawn on
    # the generic unit-length scale.
    input_channels = ("B", "G", "R")
    input_description = "BGR pixels minus VGG-Face's mean colour"
    finetune_images_per_second = 2.0  # rough CPU pace of fine-tuning, for the Train page's estimate
    # Each convolution block, then fc6–fc7 on top: "1 block" unfreezes conv5 and fc6–fc7, "0" the fully connected only.
    finetune_blocks = (*(tuple(name for name in CONV_LAYERS if name.startswith(f"conv{block}_"))
                         for block in range(1, len(CONV_BLOCKS) + 1)), ("fc6", "fc7"))
    finetune_dropout = 0.5  # as in VGG16's own training, for its 4096-d fc7
    finetune_defaults = MappingProxyType({"epochs": 10, "batch_size": 16, "warmup_epochs": 2, "finetune_blocks": 1,
                                          "learning_rate": 1e-3, "finetune_learning_rate": 1e-5})

    def __init__(self, layer: str = "fc8", weights: str | Path | None = None) -> None:
        import keras

        if layer not in EMBEDDING_LAYERS:
            raise ValueError(f"unknown VGG-Face embedding layer '{layer}'; "
                             f"choose one of: {', '.join(EMBEDDING_LAYERS)}")
        self.layer = layer
        self.is_random = weights == "random"
        self.weights_path: Path | None = None
        if self.is_random:
            self._weights_id = "random"
            self.model = build_vggface16()
        else:
            main_file = weight_files.known(self.name).name
            path = weight_files.find(main_file, weights) if weights else weight_files.find_for_backbone(self.name)
            if path is None:
                raise WeightsError(weight_files.missing_message(self.name))
            # Checksum and file structure first: a bad file fails in a moment, not after a 580 MB build.
            self._weights_id = weight_files.check_file(path, path.name)[:16]
            weight_files.check_h5(path, main_file)
            self.model = build_vggface16()
            load_weights(self.model, path)
            self.weights_path = path
        output_layer, self.embedding_dim = EMBEDDING_LAYERS[layer]
        self._embedder = keras.Model(self.model.input, self.model.get_layer(output_layer).output)
        self._lock = threading.Lock()

    def cache_key(self) -> str:
        return f"{self.name}:{self.layer}:{self.weights_id}"

    def finetune_network(self) -> keras.Model:
        """A fresh copy of the loaded VGG16 from raw crops to fc7 after its ReLU, VGG-Face preprocessing inside.

        Its layers keep their names (conv1_1 … fc7), so ``finetune_blocks`` and saved fine-tuned layers find them.
        """
        import keras

        from core.pipeline.backbones._vggface_layers import VGGFacePreprocess  # lazy: defining the layer imports Keras

        copy = build_vggface16(include_top=True, input_size=self.input_size, classes=int(self.model.output_shape[-1]),
                               fc_units=int(self.model.get_layer("fc6").units))
        copy.set_weights(self.model.get_weights())
        inputs = keras.Input((self.input_size, self.input_size, 3), name="crop")
        x = VGGFacePreprocess(name="vggface_preprocess")(inputs)
        for layer in copy.layers[1:copy.layers.index(copy.get_layer("fc7_relu")) + 1]:
            x = layer(x)
        return keras.Model(inputs, x, name="vggface16")

    def preprocess(self, crops: np.ndarray) -> np.ndarray:
        return preprocess_input(crops)

    def embed(self, crops: np.ndarray) -> np.ndarray:
        """Embeddings in batches of 32 through Keras' compiled predict step.

        Graph mode frees each activation once used: eager calls keep all of them alive, which
        at batch 32 costs about 1 GB more peak memory for the same speed.
        """
        crops = np.asarray(crops)
        if crops.ndim != 4 or crops.shape[1:] != (self.input_size, self.input_size, 3):
            raise ValueError(f"VGG-Face needs crops of shape (N, {self.input_size}, {self.input_size}, 3), "
                             f"got {crops.shape}")
        out = np.empty((len(crops), self.embedding_dim), dtype=np.float32)
        with self._lock:
            for start in range(0, len(crops), BATCH_SIZE):
                batch = self.preprocess(crops[start:start + BATCH_SIZE])
                out[start:start + len(batch)] = self._embedder.predict_on_batch(batch)
        return out


def _available() -> str | None:
    try:
        found = weight_files.find_for_backbone(VGGFace16.name)
    except WeightsError as exc:
        return str(exc)
    return None if found else weight_files.missing_message(VGGFace16.name)


BACKBONES.register(Entry(
    name=VGGFace16.name,
    label="VGG-Face (VGG16)",
    factory=VGGFace16,
    description="VGG16 trained on 2622 celebrities (Parkhi et al. 2015); 2622-d fc8 or 4096-d fc7 embeddings; "
                "fine-tunable. Needs a 580 MB weights download.",
    available=_available,
))
