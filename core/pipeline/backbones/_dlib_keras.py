"""dlib's ResNet face descriptor as a Keras 3 model, its weights read from dlib's own .dat file.

The twin of the ``anet_type`` of dlib's dnn_face_recognition_ex.cpp, layer for layer, so that the
backbone can be fine-tuned, exported and run on a GPU; its descriptors equal dlib's to 1e-4
(tests/test_dlib_keras.py). What it copies of dlib, beyond the weights:

- the input layer: (pixel − the file's mean colour) / 256, inside the model (:class:`DlibInput`), so
  the model — and any model saved from it — takes raw 0–255 RGB chips;
- padding: a stride-1 convolution keeps the size (pad 1 around 3×3), a stride-2 one and every
  pooling pad nothing; sizes round down (150 → 72 → 35 → 17 → 8 → 3 or 4 → 1 or 2);
- ``affine``: a per-channel scale and shift (:class:`DlibAffine`), dlib's frozen batch norm;
- ``add_prev`` of two tensors of different sizes (a down-sampling unit's 2×2 average-pooled input
  against its stride-2 branch: fewer channels, and 4×4 against 3×3 at level 1): both are padded with
  zeros at the end of rows, columns and channels to the larger, then added (:class:`DlibAddPrev`).

The conversion is done once per .dat file, keyed by its sha256, into the weights folder as an
``.npz`` of the Keras layers' arrays; a damaged converted file is found on loading (zip checksums,
names, shapes) and converted again. Keras only here: the backbone module imports this lazily.
"""

from __future__ import annotations

import logging
import threading
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np
from keras import ops

from core.config import weights_dir
from core.files import write_atomic
from core.pipeline import weights as weight_files
from core.pipeline.backbones import _dlib_dat
from core.pipeline.backbones._dlib_dat import (
    BLOCKS,
    DESCRIPTOR_SIZE,
    DLIB_MEAN_RGB,
    INPUT_SIZE,
    STAGES,
    STEM_FILTERS,
    downsamples,
    unit_prefix,
)
from core.pipeline.weights import WeightsError

__all__ = ["BLOCKS", "DlibAddPrev", "DlibAffine", "DlibInput", "convert", "embed", "network", "shared_network"]

log = logging.getLogger(__name__)

FORMAT = "facelab dlib-resnet keras weights 1"  # stored in each converted file; a different one is converted again
CACHE_PREFIX = "dlib_resnet_keras-"
Progress = Callable[[float], None]


@keras.saving.register_keras_serializable(package="facelab")
class DlibInput(keras.layers.Layer):
    """dlib's ``input_rgb_image_sized``: (RGB − mean colour) / 256, so a saved model takes raw 0–255 chips."""

    def __init__(self, mean: tuple[float, float, float] = DLIB_MEAN_RGB, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mean = tuple(float(value) for value in mean)

    def call(self, inputs: Any) -> Any:
        return (ops.cast(inputs, "float32") - ops.convert_to_tensor(np.asarray(self.mean, np.float32))) / 256.0

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "mean": list(self.mean)}


@keras.saving.register_keras_serializable(package="facelab")
class DlibAffine(keras.layers.Layer):
    """dlib's ``affine``: a per-channel scale and shift (its trained batch norm, frozen); both train here."""

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        channels = int(input_shape[-1])
        self.gamma = self.add_weight(shape=(channels,), initializer="ones", name="gamma")
        self.beta = self.add_weight(shape=(channels,), initializer="zeros", name="beta")

    def call(self, inputs: Any) -> Any:
        return inputs * self.gamma + self.beta


@keras.saving.register_keras_serializable(package="facelab")
class DlibAddPrev(keras.layers.Layer):
    """dlib's ``add_prev``: the sum of two (N, H, W, C) tensors, each zero-padded at the end to the larger's sizes."""

    def call(self, inputs: Any) -> Any:
        first, second = inputs
        target = self.compute_output_shape((tuple(first.shape), tuple(second.shape)))[1:]
        return self._padded(first, target) + self._padded(second, target)

    @staticmethod
    def _padded(tensor: Any, target: tuple[int, ...]) -> Any:
        widths = [(0, 0), *((0, int(want) - int(have)) for have, want in zip(tensor.shape[1:], target))]
        return tensor if not any(after for _, after in widths) else ops.pad(tensor, widths)

    def compute_output_shape(self, input_shape: Any) -> tuple[int | None, ...]:
        first, second = input_shape
        return (first[0], *(max(int(a), int(b)) for a, b in zip(first[1:], second[1:])))


def _unit(x: Any, level: int, unit: int, filters: int) -> Any:
    """dlib's ``ares`` (``ares_down`` first in levels 3–0): relu(shortcut ⊕ affine(con(relu(affine(con(x))))))."""
    prefix, down = unit_prefix(level, unit), unit == 1 and downsamples(level)
    layers = keras.layers
    y = layers.Conv2D(filters, 3, strides=2 if down else 1, padding="valid" if down else "same", name=f"{prefix}_conv1")(x)
    y = DlibAffine(name=f"{prefix}_affine1")(y)
    y = layers.ReLU(name=f"{prefix}_relu1")(y)
    y = layers.Conv2D(filters, 3, padding="same", name=f"{prefix}_conv2")(y)
    y = DlibAffine(name=f"{prefix}_affine2")(y)
    shortcut = layers.AveragePooling2D(2, strides=2, padding="valid", name=f"{prefix}_shortcut")(x) if down else x
    return layers.ReLU(name=f"{prefix}_out")(DlibAddPrev(name=f"{prefix}_add")([y, shortcut]))


def build(mean: tuple[float, float, float] = DLIB_MEAN_RGB) -> keras.Model:
    """anet_type with untrained weights: (N, 150, 150, 3) RGB 0–255 in, the 128-d descriptor ("descriptor") out."""
    layers = keras.layers
    inputs = keras.Input((INPUT_SIZE, INPUT_SIZE, 3), name="chip")
    x = DlibInput(mean, name="preprocess")(inputs)
    x = layers.Conv2D(STEM_FILTERS, 7, strides=2, padding="valid", name="stem_conv")(x)
    x = DlibAffine(name="stem_affine")(x)
    x = layers.ReLU(name="stem_relu")(x)
    x = layers.MaxPooling2D(3, strides=2, padding="valid", name="stem_pool")(x)
    for level, filters, units in STAGES:
        for unit in range(1, units + 1):
            x = _unit(x, level, unit, filters)
    x = layers.GlobalAveragePooling2D(name="global_pool")(x)
    outputs = layers.Dense(DESCRIPTOR_SIZE, use_bias=False, name="descriptor")(x)
    return keras.Model(inputs, outputs, name="dlib_resnet")


# --- conversion ----------------------------------------------------------------------------------

def _weight_shapes() -> dict[str, tuple[int, ...]]:
    """Every array of the converted file ("<layer>:<index>", in Keras' order) and its shape."""
    shapes: dict[str, tuple[int, ...]] = {"stem_conv:0": (7, 7, 3, STEM_FILTERS), "stem_conv:1": (STEM_FILTERS,),
                                          "stem_affine:0": (STEM_FILTERS,), "stem_affine:1": (STEM_FILTERS,)}
    channels = STEM_FILTERS
    for level, filters, units in STAGES:
        for unit in range(1, units + 1):
            for index in (1, 2):
                conv, affine = (f"{unit_prefix(level, unit)}_{kind}{index}" for kind in ("conv", "affine"))
                shapes[f"{conv}:0"] = (3, 3, channels, filters)
                shapes[f"{conv}:1"] = shapes[f"{affine}:0"] = shapes[f"{affine}:1"] = (filters,)
                channels = filters
    shapes["descriptor:0"] = (channels, DESCRIPTOR_SIZE)
    return shapes


def _keras_arrays(source: Path, progress: Progress | None) -> dict[str, np.ndarray]:
    """Read and check the .dat, then lay its weights out as Keras wants them (NHWC kernels)."""
    network = _dlib_dat.read(source, progress)
    named = _dlib_dat.check_anet(network, source)
    arrays: dict[str, np.ndarray] = {"format": np.asarray(FORMAT), "mean": np.asarray(network.input["mean"], np.float32)}
    for name, layer in named.items():
        if layer.kind == "con":  # (F, K, R, C) → (R, C, K, F); a convolution saved without bias adds zeros
            filters = layer.arrays["filters"]
            values = [filters.transpose(2, 3, 1, 0), layer.arrays.get("bias", np.zeros(len(filters), np.float32))]
        elif layer.kind == "affine":
            values = [layer.arrays["gamma"], layer.arrays["beta"]]
        else:
            values = [layer.arrays["weights"]]
        arrays.update({f"{name}:{index}": np.ascontiguousarray(value, np.float32) for index, value in enumerate(values)})
    expected = _weight_shapes()
    wrong = {key: array.shape for key, array in arrays.items() if key in expected and array.shape != expected[key]}
    if wrong or set(expected) - set(arrays):
        raise WeightsError(f"{source.name}: its layers do not have the shapes of dlib's ResNet face model "
                           f"({wrong or 'weights missing'}).")
    return arrays


def _load(cached: Path) -> dict[str, np.ndarray]:
    """The converted arrays, every one checked (zip checksums on reading, format, names, shapes, finite values)."""
    expected = _weight_shapes()
    try:
        with np.load(cached, allow_pickle=False) as stored:
            arrays = {key: stored[key] for key in stored.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise WeightsError(f"{cached.name} is damaged ({exc}).") from exc
    if str(arrays.get("format", "")) != FORMAT or arrays.get("mean", np.zeros(0)).shape != (3,):
        raise WeightsError(f"{cached.name} is not a converted dlib ResNet of this FaceLab version.")
    for key, shape in expected.items():
        array = arrays.get(key)
        if array is None or array.shape != shape or array.dtype != np.float32 or not np.isfinite(array).all():
            raise WeightsError(f"{cached.name} is damaged: its array {key} is missing or wrong.")
    return arrays


def _source(path: str | Path | None) -> Path:
    if path is not None:
        if not Path(path).is_file():
            raise WeightsError(f"dlib ResNet model file {path} does not exist.")
        return Path(path).resolve()
    try:
        return _dlib_dat.model_path().resolve()
    except ImportError:
        raise WeightsError("dlib ResNet weights not found: face_recognition_models is not installed "
                           "(pip install face_recognition_models).") from None


_convert_lock = threading.Lock()


def _converted(source: Path, progress: Progress | None) -> tuple[Path, dict[str, np.ndarray]]:
    """The converted file for ``source`` and its arrays, converting (again) when it is absent or damaged."""
    target = weights_dir() / f"{CACHE_PREFIX}{weight_files.sha256_of(source)[:16]}.npz"
    with _convert_lock:  # one conversion at a time in this process; across processes the atomic rename decides
        if target.is_file():
            try:
                arrays = _load(target)
            except WeightsError as exc:
                log.warning("%s; converting %s again.", exc, source.name)
            else:
                if progress is not None:
                    progress(1.0)
                return target, arrays
        reading = None if progress is None else (lambda done: progress(0.9 * done))
        arrays = _keras_arrays(source, reading)  # before anything is written: a bad .dat leaves no file behind
        write_atomic(target, lambda out: np.savez(out, **arrays))
        if progress is not None:
            progress(1.0)
        return target, arrays


def convert(path: str | Path | None = None, progress: Progress | None = None) -> Path:
    """The Keras weights converted from the .dat at ``path`` (default: face_recognition_models'), once per file.

    ``progress`` gets the fraction done (0–1). :class:`WeightsError` when the .dat is missing or not
    dlib's ResNet face model; nothing is left in the weights folder then.
    """
    return _converted(_source(path), progress)[0]


def network(path: str | Path | None = None, progress: Progress | None = None) -> keras.Model:
    """A new Keras model on every call (a fresh copy to fine-tune), holding the weights of the .dat at ``path``."""
    _, arrays = _converted(_source(path), progress)
    model = build(tuple(float(value) for value in arrays["mean"]))  # type: ignore[arg-type]
    for names in BLOCKS:
        for name in names:
            layer = model.get_layer(name)
            layer.set_weights([arrays[f"{name}:{index}"] for index in range(len(layer.weights))])
    return model


_shared: dict[Path, keras.Model] = {}
_shared_lock = threading.Lock()
_predict_lock = threading.Lock()


def shared_network(path: str | Path | None = None) -> keras.Model:
    """The process's one inference copy of the model for this file, built on first use (concurrent sessions share it)."""
    source = _source(path)
    with _shared_lock:
        if source not in _shared:
            _shared[source] = network(source)
        return _shared[source]


def embed(chips: np.ndarray, path: str | Path | None = None) -> np.ndarray:
    """Descriptors (N, 128) float32 of (N, 150, 150, 3) RGB chips, in one batch through the shared model.

    Keras' compiled predict step, one call at a time: graph mode frees each activation once used.
    """
    model = shared_network(path)
    batch = np.asarray(chips, dtype=np.float32)
    if len(batch) == 0:
        return np.zeros((0, DESCRIPTOR_SIZE), np.float32)
    with _predict_lock:
        return np.asarray(model.predict_on_batch(batch), dtype=np.float32)
