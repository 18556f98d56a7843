"""A reader of dlib's own file for its ResNet face descriptor (dlib_face_recognition_resnet_model_v1.dat).

dlib's Python bindings run the network but hand out none of its weights, so the Keras twin
(:mod:`core.pipeline.backbones._dlib_keras`) reads them from the file itself. The format, as
dlib's serialize.h and dnn/*.h write it:

- an integer is a control byte (bit 7: negative; low 4 bits: how many bytes follow, at most 8;
  bits 4–6 always 0) then its magnitude, little-endian; a string is its length then its bytes; a
  bool is the character '0' or '1'; a float or double is two integers, mantissa then exponent
  (value = mantissa · 2^exponent);
- a tensor is version 2, its four sizes (samples, channels, rows, columns), then that many
  little-endian float32; an "alias tensor" (a view's shape) is version 1 and four sizes;
- a network is written outside in: the loss layer (version 1, its record), then each wrapper's
  version down to the input (``add_layer`` 2, the bottom one 2 or 3; tag and skip layers 1, and
  nothing else of theirs is written), then the input layer, then each layer's record from the bottom
  up (its kind as a string, its fields, then the layer's training state, which is skipped).

:func:`read` parses that into :class:`Network` (records bottom → top) and checks every length
against what is left of the file before reading it, so a damaged file is refused with one
sentence (:class:`WeightsError`) instead of a parser error or a huge allocation. :func:`check_anet`
then checks the records are dlib's ``anet_type`` (dnn_face_recognition_ex.cpp) and names the
layers with weights the way the Keras twin names its layers. Keras-free: the backbone module
reads :data:`BLOCKS` from here without loading TensorFlow.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.pipeline.weights import WeightsError

MAX_FILE_BYTES = 256 << 20  # dlib's ResNet is 22 MB: anything far larger is not it (and is not read into memory)
_MAX_STRING = 256  # dlib's layer kinds are short names
_SPECIAL_EXPONENTS = {32000: "infinity", 32001: "-infinity", 32002: "NaN"}  # dlib's float_details codes

# anet_type, bottom → top: (dlib's level number, filters, residual units; the first unit of every level but 4
# halves the size). The stem is a 7×7/2 convolution, affine, relu, 3×3/2 max-pool; the top a global average
# pool and a 128-unit fully connected layer without bias.
STAGES: tuple[tuple[int, int, int], ...] = ((4, 32, 3), (3, 64, 4), (2, 128, 3), (1, 256, 3), (0, 256, 1))
STEM_FILTERS = 32
DESCRIPTOR_SIZE = 128
INPUT_SIZE = 150
DLIB_MEAN_RGB = (122.782, 117.001, 104.298)  # input_rgb_image_sized's defaults: the input layer takes (RGB − this) / 256


def model_path() -> Path:
    """Where face_recognition_models ships dlib_face_recognition_resnet_model_v1.dat (ImportError when absent)."""
    import face_recognition_models

    return Path(face_recognition_models.face_recognition_model_location())


def downsamples(level: int) -> bool:
    """Whether a level's first unit is dlib's ``ares_down`` (stride 2, average-pooled shortcut)."""
    return level != STAGES[0][0]


def unit_prefix(level: int, unit: int) -> str:
    """The name prefix of a residual unit's layers in the Keras twin, units counted from 1 at the bottom."""
    return f"level{level}_unit{unit}"


BLOCKS: tuple[tuple[str, ...], ...] = (
    ("stem_conv", "stem_affine"),
    *(tuple(f"{unit_prefix(level, unit)}_{kind}{i}" for unit in range(1, units + 1) for i in (1, 2)
            for kind in ("conv", "affine")) for level, _, units in STAGES),
    ("descriptor",),
)


@dataclass
class Layer:
    """One layer record: dlib's kind (``con``, ``affine``, ``relu``, ``max_pool``, ``avg_pool``, ``add_prev``,
    ``fc``, or ``tag`` for a tag or skip layer), its hyper-parameters and its float32 weights."""

    kind: str
    hyper: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    name: str = ""  # the Keras twin's layer name, set by check_anet for layers with weights


@dataclass
class Network:
    """A parsed dlib network: the input layer's settings, the layers bottom → top, the loss's settings."""

    input: dict[str, Any]
    layers: list[Layer]
    loss: dict[str, Any]


class _Damaged(Exception):
    """What is wrong at some point of the stream; :func:`read` turns it into a WeightsError naming the file."""


class _Stream:
    """dlib's primitive encodings over the file's bytes, every read checked against what is left."""

    def __init__(self, data: bytes, progress: Callable[[float], None] | None) -> None:
        self.data = data
        self.pos = 0
        self._progress = progress
        self._reported = 0.0

    def take(self, count: int, what: str) -> bytes:
        if count < 0 or count > len(self.data) - self.pos:
            raise _Damaged(f"it ends inside {what} (byte {self.pos} of {len(self.data)}): the file is truncated")
        chunk = self.data[self.pos:self.pos + count]
        self.pos += count
        if self._progress is not None and self.pos / len(self.data) - self._reported >= 0.02:
            self._reported = self.pos / len(self.data)
            self._progress(self._reported)
        return chunk

    def integer(self, what: str = "an integer") -> int:
        control = self.take(1, what)[0]
        size = control & 0x0F
        if control & 0x70 or size > 8:
            raise _Damaged(f"byte {self.pos - 1} should start {what} but is {control:#04x}")
        value = int.from_bytes(self.take(size, what), "little")
        return -value if control & 0x80 else value

    def count(self, what: str, limit: int = 1 << 31) -> int:
        value = self.integer(what)
        if not 0 <= value <= limit:
            raise _Damaged(f"{what} is {value}")
        return value

    def string(self, what: str = "a layer kind") -> str:
        raw = self.take(self.count(f"the length of {what}", _MAX_STRING), what)
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError as exc:
            raise _Damaged(f"{what} at byte {self.pos - len(raw)} is not text") from exc

    def real(self, what: str) -> float:
        mantissa, exponent = self.integer(what), self.integer(what)
        if exponent in _SPECIAL_EXPONENTS or not -1100 <= exponent <= 1100:
            raise _Damaged(f"{what} is {_SPECIAL_EXPONENTS.get(exponent, 'out of range')}")
        return math.ldexp(mantissa, exponent)

    def flag(self, what: str) -> bool:
        char = self.take(1, what)
        if char not in (b"0", b"1"):
            raise _Damaged(f"{what} at byte {self.pos - 1} is {char!r}, not '0' or '1'")
        return char == b"1"

    def shape(self, what: str) -> tuple[int, int, int, int]:
        return tuple(self.count(f"a size of {what}") for _ in range(4))  # type: ignore[return-value]

    def tensor(self, what: str) -> np.ndarray:
        version = self.integer(f"the version of {what}")
        if version != 2:
            raise _Damaged(f"{what} has tensor format {version}, this reader knows format 2")
        shape = self.shape(what)
        size = math.prod(shape)
        raw = self.take(4 * size, what)  # checked against the bytes left before numpy allocates anything
        return np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(shape)

    def alias(self, what: str) -> tuple[int, int, int, int]:
        if self.integer(f"the version of {what}") != 1:
            raise _Damaged(f"the shape of {what} has an unknown format")
        return self.shape(what)

    def skip_reals(self, count: int, what: str) -> None:
        for _ in range(count):
            self.real(what)


def _pool(stream: _Stream, version: str) -> Layer:
    kind = version.removesuffix("_2").removesuffix("_")
    rows, cols, stride_y, stride_x, pad_y, pad_x = (stream.integer(f"the {kind} settings") for _ in range(6))
    return Layer(kind, {"size": (rows, cols), "strides": (stride_y, stride_x), "padding": (pad_y, pad_x)})


def _con(stream: _Stream, version: str) -> Layer:
    params = stream.tensor("a convolution's weights")
    filters = stream.count("a convolution's filter count")
    rows, cols, stride_y, stride_x, pad_y, pad_x = (stream.integer("a convolution's settings") for _ in range(6))
    shape = stream.alias("a convolution's filters")
    stream.alias("a convolution's biases")
    stream.skip_reals(4, "a convolution's learning rates")
    bias = stream.flag("a convolution's bias switch") if version == "con_5" else True
    count = math.prod(shape)
    if shape[0] != filters or shape[2:] != (rows, cols) or params.size != count + (filters if bias else 0):
        raise _Damaged(f"a convolution's weights ({params.size} values) do not fit its shape {shape}")
    flat = params.reshape(-1)
    arrays = {"filters": flat[:count].reshape(shape)}
    if bias:
        arrays["bias"] = flat[count:]
    return Layer("con", {"filters": filters, "size": (rows, cols), "strides": (stride_y, stride_x),
                         "padding": (pad_y, pad_x)}, arrays)


def _affine(stream: _Stream, version: str) -> Layer:
    """An affine record, or a batch-norm record turned into one as dlib does: γ/√(σ²+ε), β − that·μ (float32)."""
    params = stream.tensor("an affine layer's weights").reshape(-1)
    gamma = stream.alias("an affine layer's scale")
    stream.alias("an affine layer's shift")
    channels = math.prod(gamma)
    if params.size != 2 * channels:
        raise _Damaged(f"an affine layer holds {params.size} values for {channels} channels")
    scale, shift = params[:channels], params[channels:]
    if version.startswith("bn_"):
        stream.tensor("a batch norm's means")
        stream.tensor("a batch norm's deviations")
        means = stream.tensor("a batch norm's running means").reshape(-1)
        variances = stream.tensor("a batch norm's running variances").reshape(-1)
        stream.count("a batch norm's update count", 1 << 62)
        stream.count("a batch norm's window", 1 << 62)
        stream.skip_reals(4, "a batch norm's learning rates")
        eps = np.float32(stream.real("a batch norm's epsilon"))
        if means.size != channels or variances.size != channels:
            raise _Damaged("a batch norm's running statistics do not fit its channels")
        scale = scale / np.sqrt(variances + eps)
        shift = shift - scale * means
        mode = 1 if version == "bn_fc2" else 0
    else:
        mode = stream.integer("an affine layer's mode")
        if version == "affine_2" and stream.flag("an affine layer's switch"):
            raise _Damaged("an affine layer is switched off (fused into its convolution), which this reader does not undo")
    if mode != 0:
        raise _Damaged("an affine layer works per value (fc mode), not per channel")
    return Layer("affine", {"channels": channels}, {"gamma": scale.astype(np.float32), "beta": shift.astype(np.float32)})


def _fc(stream: _Stream, version: str) -> Layer:
    outputs = stream.count("a fully connected layer's output count")
    inputs = stream.count("a fully connected layer's input count")
    params = stream.tensor("a fully connected layer's weights").reshape(-1)
    stream.alias("a fully connected layer's weights")
    stream.alias("a fully connected layer's biases")
    has_bias = stream.integer("a fully connected layer's bias mode") == 0  # dlib's FC_HAS_BIAS (fc_no_bias: 1)
    stream.skip_reals(4, "a fully connected layer's learning rates")
    switched_on = stream.flag("a fully connected layer's bias switch") if version == "fc_3" else True
    bias = has_bias and switched_on
    if params.size != (inputs + bias) * outputs:
        raise _Damaged(f"a fully connected layer holds {params.size} values for {inputs} → {outputs}")
    arrays = {"weights": params[:inputs * outputs].reshape(inputs, outputs)}
    if bias:
        arrays["bias"] = params[inputs * outputs:]
    return Layer("fc", {"outputs": outputs, "inputs": inputs}, arrays)


_RECORDS: dict[str, Callable[[_Stream, str], Layer]] = {
    "con_4": _con, "con_5": _con,
    "affine_": _affine, "affine_2": _affine, "bn_con2": _affine, "bn_fc2": _affine,
    "relu_": lambda stream, version: Layer("relu"),
    "add_prev_": lambda stream, version: Layer("add_prev"),
    "max_pool_2": _pool, "avg_pool_2": _pool,
    "fc_2": _fc, "fc_3": _fc,
}


def _record(stream: _Stream) -> Layer:
    start = stream.pos
    version = stream.string()
    if version not in _RECORDS:
        raise _Damaged(f"it holds a layer of kind '{version[:40]}' (byte {start}), which dlib's ResNet has not")
    return _RECORDS[version](stream, version)


def _skip_state(stream: _Stream, wrapper_version: int, bottom: bool) -> None:
    """The training state an ``add_layer`` writes after its layer's record (flags and scratch tensors)."""
    for what in ("setup", "staleness", "in-place"):
        stream.flag(f"a layer's {what} flag")
    for what in ("gradient", "output"):
        stream.tensor(f"a layer's cached {what}")
    if bottom:
        stream.tensor("the input's gradient")
        if wrapper_version >= 3:
            stream.count("the input's sample expansion")
    elif wrapper_version == 2:
        stream.tensor("a layer's parameter gradient")


def _input(stream: _Stream) -> dict[str, Any]:
    kind = stream.string("the input layer's kind")
    if kind != "input_rgb_image_sized":
        raise _Damaged(f"its input layer is '{kind[:40]}', not dlib's input_rgb_image_sized")
    mean = tuple(stream.real("the input's mean colour") for _ in range(3))
    size = (stream.count("the input's height"), stream.count("the input's width"))
    return {"mean": mean, "size": size}


def _loss(stream: _Stream) -> dict[str, Any]:
    if stream.integer("the file's first integer") != 1:
        raise _Damaged("it does not start with a dlib loss layer")
    kind = stream.string("the loss layer's kind")
    if kind == "loss_metric_":
        return {"margin": 0.1, "distance_threshold": 0.75}
    if kind != "loss_metric_2":
        raise _Damaged(f"its loss is '{kind[:40]}', not dlib's metric loss (loss_metric)")
    return {"margin": stream.real("the loss margin"), "distance_threshold": stream.real("the loss threshold")}


def _wrappers(stream: _Stream) -> list[int]:
    """The wrappers' versions, top → bottom, up to the input layer (see the module docstring)."""
    versions: list[int] = []
    while True:
        mark = stream.pos
        version = stream.integer("a layer's version")
        if version in (1, 2, 3):
            versions.append(version)
            if version == 3:
                return versions
        else:
            stream.pos = mark  # the input layer's kind: the last version read was the bottom layer's
            if not versions or versions[-1] != 2:
                raise _Damaged("its layers do not end on an input layer")
            return versions


def _parse(stream: _Stream) -> Network:
    loss = _loss(stream)
    wrappers = _wrappers(stream)
    network_input = _input(stream)
    layers: list[Layer] = []
    for depth, version in enumerate(reversed(wrappers)):
        if version == 1:
            layers.append(Layer("tag"))
            continue
        layers.append(_record(stream))
        _skip_state(stream, version, bottom=depth == 0)
    if stream.pos != len(stream.data):
        raise _Damaged(f"{len(stream.data) - stream.pos} bytes follow the network's last layer")
    for layer in layers:
        for name, array in layer.arrays.items():
            if not np.isfinite(array).all():
                raise _Damaged(f"a {layer.kind} layer's {name} hold values that are not finite numbers")
    return Network(network_input, layers, loss)


def read(path: Path, progress: Callable[[float], None] | None = None) -> Network:
    """Parse dlib's serialised network at ``path``; :class:`WeightsError` names the file and what is wrong.

    ``progress`` gets the fraction of the file read so far (0–1).
    """
    path = Path(path)
    try:
        if not path.is_file():
            raise WeightsError(f"{path} does not exist or is not a regular file.")
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise WeightsError(f"{path.name} is {size >> 20} MB, far larger than dlib's ResNet face model (22 MB); "
                               "it is not that file.")
        data = path.read_bytes()
    except OSError as exc:
        raise WeightsError(f"{path.name} cannot be read ({exc.strerror or exc}).") from exc
    if not data:
        raise WeightsError(f"{path.name} is empty; it is not dlib's ResNet face model.")
    try:
        network = _parse(_Stream(data, progress))
    except _Damaged as exc:
        raise WeightsError(f"{path.name} is not an intact dlib ResNet face model: {exc}.") from None
    except (ValueError, OverflowError) as exc:  # a size or value no dlib file holds
        raise WeightsError(f"{path.name} is not an intact dlib ResNet face model: {exc}.") from None
    if progress is not None:
        progress(1.0)
    return network


# --- the face descriptor's architecture ----------------------------------------------------------

def _expected() -> Iterator[tuple[str, dict[str, Any], str]]:
    """anet_type's records bottom → top: (kind, hyper-parameters that must match, name if it has weights)."""

    def con(filters: int, size: int, stride: int, name: str) -> tuple[str, dict[str, Any], str]:
        return "con", {"filters": filters, "size": (size, size), "strides": (stride, stride),
                       "padding": (0, 0) if stride != 1 else (size // 2, size // 2)}, name

    yield con(STEM_FILTERS, 7, 2, "stem_conv")
    yield "affine", {"channels": STEM_FILTERS}, "stem_affine"
    yield "relu", {}, ""
    yield "max_pool", {"size": (3, 3), "strides": (2, 2), "padding": (0, 0)}, ""
    for level, filters, units in STAGES:
        for unit in range(1, units + 1):
            prefix, down = unit_prefix(level, unit), unit == 1 and downsamples(level)
            yield "tag", {}, ""
            yield con(filters, 3, 2 if down else 1, f"{prefix}_conv1")
            yield "affine", {"channels": filters}, f"{prefix}_affine1"
            yield "relu", {}, ""
            yield con(filters, 3, 1, f"{prefix}_conv2")
            yield "affine", {"channels": filters}, f"{prefix}_affine2"
            if down:
                yield "tag", {}, ""
                yield "tag", {}, ""
                yield "avg_pool", {"size": (2, 2), "strides": (2, 2), "padding": (0, 0)}, ""
            yield "add_prev", {}, ""
            yield "relu", {}, ""
    yield "avg_pool", {"size": (0, 0), "strides": (1, 1), "padding": (0, 0)}, ""
    yield "fc", {"outputs": DESCRIPTOR_SIZE, "inputs": STAGES[-1][1]}, "descriptor"


def check_anet(network: Network, path: Path) -> dict[str, Layer]:
    """The layers with weights by their Keras name, once ``network`` is checked to be dlib's face ResNet.

    Another dlib network (a detector, a different ResNet) is refused with the first layer that differs.
    """
    expected = list(_expected())
    if network.input["size"] != (INPUT_SIZE, INPUT_SIZE):
        raise WeightsError(f"{Path(path).name} takes {network.input['size']} images, dlib's ResNet face model "
                           f"{INPUT_SIZE}×{INPUT_SIZE}; it is another dlib network.")
    if len(network.layers) != len(expected):
        raise WeightsError(f"{Path(path).name} has {len(network.layers)} layers, dlib's ResNet face model "
                           f"{len(expected)}; it is another dlib network.")
    named: dict[str, Layer] = {}
    for index, (layer, (kind, hyper, name)) in enumerate(zip(network.layers, expected)):
        differs = layer.kind != kind or any(layer.hyper.get(key) != value for key, value in hyper.items())
        if differs:
            raise WeightsError(f"{Path(path).name}: layer {index} (from the input) is {layer.kind} {layer.hyper}, "
                               f"where dlib's ResNet face model has {kind} {hyper}; it is another dlib network.")
        if name:
            layer.name = name
            named[name] = layer
    return named
