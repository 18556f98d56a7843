"""The ONNX Runtime networks' common part: a graph written from weight arrays, built once and kept in the weights
folder under the weights' checksum, built again when that copy is damaged, and still served from a read-only disk."""

from __future__ import annotations

import errno
import logging
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from core.pipeline import _onnx  # noqa: E402


@pytest.fixture()
def weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A weights file (one 2×2 matrix) in a fresh FaceLab home, with no session shared yet."""
    monkeypatch.setenv("FACELAB_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(_onnx, "_sessions", {})
    path = tmp_path / "matrix.npy"
    np.save(path, np.asarray([[1.0, 2.0], [3.0, 4.0]], np.float32))
    return path


def builder(weights: Path, calls: list[Path]) -> object:
    def build() -> bytes:
        calls.append(weights)
        graph = _onnx.Graph("matrix")
        return graph.to_bytes({"x": (None, 2)}, {"y": (graph.op("MatMul", "x", graph.const(np.load(weights))), 2)})
    return build


def run(session: object) -> np.ndarray:
    return session.run(None, {"x": np.asarray([[1.0, 1.0]], np.float32)})[0]  # type: ignore[attr-defined]


def kept(home_weights: Path) -> list[Path]:
    return sorted(home_weights.glob("*.onnx"))


def test_a_network_is_built_once_shared_and_read_back(weights: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from core.config import weights_dir

    calls: list[Path] = []
    first = _onnx.session("matrix", weights, builder(weights, calls))
    assert np.array_equal(run(first), [[4.0, 6.0]])
    assert _onnx.session("matrix", weights, builder(weights, calls)) is first and len(calls) == 1  # shared
    [file] = kept(weights_dir())
    assert file.name.startswith("matrix-") and file.name.endswith(f"-v{_onnx.FORMAT}.onnx")
    monkeypatch.setattr(_onnx, "_sessions", {})  # a new process: the kept file, no build
    assert np.array_equal(run(_onnx.session("matrix", weights, builder(weights, calls))), [[4.0, 6.0]])
    assert len(calls) == 1
    np.save(weights, np.eye(2, dtype=np.float32))  # other weights: another checksum, another file
    assert np.array_equal(run(_onnx.session("matrix", weights, builder(weights, calls))), [[1.0, 1.0]])
    assert len(calls) == 2 and len(kept(weights_dir())) == 2


def test_a_damaged_copy_is_built_again(weights: Path, monkeypatch: pytest.MonkeyPatch,
                                       caplog: pytest.LogCaptureFixture) -> None:
    from core.config import weights_dir

    calls: list[Path] = []
    _onnx.session("matrix", weights, builder(weights, calls))
    [file] = kept(weights_dir())
    file.write_bytes(file.read_bytes()[:40])
    monkeypatch.setattr(_onnx, "_sessions", {})
    with caplog.at_level(logging.WARNING):
        assert np.array_equal(run(_onnx.session("matrix", weights, builder(weights, calls))), [[4.0, 6.0]])
    assert len(calls) == 2 and "damaged" in caplog.text and file.stat().st_size > 40


def test_a_read_only_or_full_disk_still_serves_the_network(weights: Path, monkeypatch: pytest.MonkeyPatch,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    """The copy cannot be kept (every write fails as on a read-only disk): the network runs from memory."""
    from core.config import weights_dir

    def refuse(target: Path, data: bytes) -> None:
        raise OSError(errno.EROFS, "Read-only file system", str(target))

    monkeypatch.setattr(_onnx, "write_bytes_atomic", refuse)
    with caplog.at_level(logging.WARNING):
        assert np.array_equal(run(_onnx.session("matrix", weights, builder(weights, []))), [[4.0, 6.0]])
    assert "could not keep" in caplog.text and not kept(weights_dir())
