"""dlib's ResNet face descriptor as an ONNX graph read from dlib's .dat: the ``dlib-resnet`` backbone's default engine.

The same network as the Keras twin (:mod:`._dlib_keras`, whose docstring lists what it copies of dlib: the input
layer's mean, padding, frozen batch norm, ``add_prev`` of unequal tensors), written for ONNX Runtime: NCHW inside,
raw 0–255 RGB chips (N, 150, 150, 3) in. Its descriptors equal dlib's to 1e-4 (tests/test_dlib_keras.py); on 2
cores it describes a chip in ~3 ms, as fast as the twin on TensorFlow, without TensorFlow's 6 s to start.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from core.pipeline import _onnx
from core.pipeline.backbones import _dlib_dat
from core.pipeline.backbones._dlib_dat import DESCRIPTOR_SIZE, INPUT_SIZE, STAGES, downsamples, unit_prefix


def build(source: Path) -> bytes:
    """The ONNX model of the .dat at ``source`` (:class:`WeightsError` when it is not dlib's ResNet face model)."""
    network = _dlib_dat.read(source, None)
    layers = _dlib_dat.check_anet(network, source)
    graph = _onnx.Graph("dlib_resnet")

    def conv(x: str, name: str, stride: int, pad: int) -> str:
        arrays = layers[name].arrays
        filters = arrays["filters"]  # dlib's (out, in, rows, cols): ONNX's own order
        return graph.conv(x, filters, arrays.get("bias", np.zeros(len(filters), np.float32)), stride, pad)

    def affine(x: str, name: str) -> str:
        arrays = layers[name].arrays
        shape = (-1, 1, 1)
        scaled = graph.op("Mul", x, graph.const(arrays["gamma"].reshape(shape)))
        return graph.op("Add", scaled, graph.const(arrays["beta"].reshape(shape)))

    def padded(x: str, size: int, channels: int, to_size: int, to_channels: int) -> str:
        """Zeros at the end of channels, rows and columns, as dlib's add_prev pads the smaller tensor."""
        if (size, channels) == (to_size, to_channels):
            return x
        ends = [0, 0, 0, 0, 0, to_channels - channels, to_size - size, to_size - size]
        return graph.op("Pad", x, graph.const(ends, np.int64))

    x = graph.op("Mul", graph.op("Sub", "chip", graph.const(network.input["mean"])), graph.const(1 / 256))
    x = graph.op("Transpose", x, perm=[0, 3, 1, 2])
    x = graph.op("Relu", affine(conv(x, "stem_conv", 2, 0), "stem_affine"))
    x = graph.op("MaxPool", x, kernel_shape=[3, 3], strides=[2, 2])
    size, channels = ((INPUT_SIZE - 7) // 2 + 1 - 3) // 2 + 1, layers["stem_conv"].arrays["filters"].shape[0]
    for level, filters, units in STAGES:
        for unit in range(1, units + 1):
            prefix, down = unit_prefix(level, unit), unit == 1 and downsamples(level)
            y = graph.op("Relu", affine(conv(x, f"{prefix}_conv1", 2 if down else 1, 0 if down else 1), f"{prefix}_affine1"))
            y = affine(conv(y, f"{prefix}_conv2", 1, 1), f"{prefix}_affine2")
            branch_size = (size - 3) // 2 + 1 if down else size
            if down:
                x, size = graph.op("AveragePool", x, kernel_shape=[2, 2], strides=[2, 2]), (size - 2) // 2 + 1
            out = max(size, branch_size)
            x = graph.op("Relu", graph.op("Add", padded(y, branch_size, filters, out, filters),
                                          padded(x, size, channels, out, filters)))
            size, channels = out, filters
    x = graph.op("Flatten", graph.op("GlobalAveragePool", x))
    descriptor = graph.op("MatMul", x, graph.const(layers["descriptor"].arrays["weights"]))
    return graph.to_bytes({"chip": (None, INPUT_SIZE, INPUT_SIZE, 3)}, {"descriptor": (descriptor, 2)})


def load(source: Path) -> Any:
    """The process's shared session for the .dat at ``source`` (built from it the first time: ~1 s)."""
    return _onnx.session("dlib_resnet", source, lambda: build(source))


def embed(chips: np.ndarray, source: Path) -> np.ndarray:
    """Descriptors (N, 128) float32 of (N, 150, 150, 3) RGB chips, in one call of the shared session."""
    if len(chips) == 0:
        return np.zeros((0, DESCRIPTOR_SIZE), np.float32)
    return load(source).run(None, {"chip": np.asarray(chips, dtype=np.float32)})[0]
