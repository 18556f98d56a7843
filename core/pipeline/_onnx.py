"""Pretrained networks run on ONNX Runtime, each written here as an ONNX graph from its published weights.

Why not TensorFlow for them: importing it takes 4.6 s on a 2-core machine, three times face_recognition's whole
cold verification, while ONNX Runtime imports in 0.05 s and runs dlib's ResNet as fast as the Keras twin on
TensorFlow (BENCHMARKS.md). Inference only: fine-tuning and training stay in Keras. FaceLab writes each graph
itself (:class:`Graph`, from the weight arrays), so no converter and no TensorFlow is needed even once; the built
file is kept in the weights folder under the weights' checksum, and built again when absent, damaged or from an
older :data:`FORMAT`. A weights folder that cannot be written only costs the build on every start.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from core.config import weights_dir
from core.files import write_bytes_atomic
from core.pipeline.weights import sha256_of

log = logging.getLogger(__name__)

FORMAT = 1  # part of every built file's name: raise it when a builder writes something different
OPSET = 17


class Graph:
    """An ONNX graph written node by node: tensors are named in order, constants are float32 unless said."""

    def __init__(self, name: str) -> None:
        import onnx  # noqa: PLC0415 - only when a network is built, once per weights file (0.8 s to import)

        self._onnx = onnx
        self.name = name
        self._nodes: list[Any] = []
        self._constants: list[Any] = []

    def _fresh(self, kind: str) -> str:
        return f"{kind.lower()}_{len(self._nodes) + len(self._constants)}"

    def const(self, value: Any, dtype: Any = np.float32) -> str:
        name = self._fresh("const")
        self._constants.append(self._onnx.numpy_helper.from_array(np.ascontiguousarray(value, dtype=dtype), name))
        return name

    def op(self, kind: str, *inputs: str, **attributes: Any) -> str:
        output = self._fresh(kind)
        self._nodes.append(self._onnx.helper.make_node(kind, list(inputs), [output], **attributes))
        return output

    def conv(self, x: str, kernel: np.ndarray, bias: np.ndarray, stride: int = 1, pad: int | str = 0) -> str:
        """A 2-D convolution of an NCHW tensor; ``kernel`` is (out, in, rows, cols); ``pad`` pixels or "same"."""
        rows, cols = kernel.shape[2:]
        padding = {"auto_pad": "SAME_UPPER"} if pad == "same" else {"pads": [pad] * 4}
        return self.op("Conv", x, self.const(kernel), self.const(bias), kernel_shape=[rows, cols],
                       strides=[stride, stride], **padding)

    def to_bytes(self, inputs: dict[str, tuple[int | None, ...]], outputs: dict[str, tuple[str, int]]) -> bytes:
        """The model: float32 ``inputs`` (name → shape, None for any size), ``outputs`` (name → (tensor, rank))."""
        helper, floats = self._onnx.helper, self._onnx.TensorProto.FLOAT
        nodes = [*self._nodes, *(helper.make_node("Identity", [tensor], [name]) for name, (tensor, _) in outputs.items())]
        graph = helper.make_graph(nodes, self.name,
                                  [helper.make_tensor_value_info(name, floats, list(shape)) for name, shape in inputs.items()],
                                  [helper.make_tensor_value_info(name, floats, [None] * rank) for name, (_, rank) in outputs.items()],
                                  self._constants)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="facelab")
        model.ir_version = 8  # what every ONNX Runtime since 1.14 reads
        self._onnx.checker.check_model(model)
        return model.SerializeToString()


_sessions: dict[str, Any] = {}  # built file's name (network, weights checksum, format) → its session
_lock = threading.Lock()


def session(name: str, weights: Path, build: Callable[[], bytes]) -> Any:
    """The process's one ONNX Runtime session of network ``name`` built from ``weights`` (thread-safe, shared).

    ``build`` writes the graph from the weights; it runs only when the weights folder has no good copy yet.
    """
    file_name = f"{name}-{sha256_of(weights)[:16]}-v{FORMAT}.onnx"
    with _lock:
        # Keyed by the file's name, not its folder: the same weights give the same network, so a process that
        # switches FaceLab homes (a test suite, a server whose users change homes) keeps its one session.
        if file_name not in _sessions:
            _sessions[file_name] = _load_or_build(weights_dir() / file_name, build)
        return _sessions[file_name]


def _load_or_build(target: Path, build: Callable[[], bytes]) -> Any:
    if target.is_file():
        try:
            return _open(target.read_bytes())
        except Exception as exc:  # noqa: BLE001 - ONNX Runtime's own error types; any of them means "build it again"
            log.warning("%s is damaged (%s); building it again.", target.name, exc)
    data = build()
    try:
        write_bytes_atomic(target, data)
    except OSError as exc:  # read-only or full disk: run from memory, build again next start
        log.warning("could not keep %s (%s); it will be built again next time.", target.name, exc)
    return _open(data)


def _open(model: bytes) -> Any:
    import onnxruntime  # noqa: PLC0415 - 0.05 s, only for the networks that run on it

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = os.cpu_count() or 1  # one call uses every core; calls from threads queue inside
    options.log_severity_level = 3  # errors only: its warnings are about graph rewrites, not the user's photos
    # Idle threads sleep instead of spinning: with four networks (and the page's own threads) sharing two cores, the
    # spinning threads of one took the CPU from the next (117 photos through MTCNN: 3.5 s spinning, 2.0 s not;
    # a warm two-photo verification 0.13 s → 0.065 s).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])
