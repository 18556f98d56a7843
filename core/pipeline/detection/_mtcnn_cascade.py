"""MTCNN's cascade (P-Net → R-Net → O-Net) on ONNX Runtime, with the mtcnn package's weights and its 1.0 rules.

The mtcnn package runs its networks in TensorFlow and imports it with the package (4.6 s here, before the first
face); this module reads the same weight files without importing the package and writes the three networks as
ONNX graphs (:mod:`core.pipeline._onnx`). The steps around them follow mtcnn 1.0 so the faces are the package's
(tests/test_detection.py compares the two on real photos):

- the pyramid: scales 12/min_face × 0.709^k, as many as ``round(log(min_side/12)/log(1/0.709) − 1)``, each level an
  area-averaged resize of the normalised image ((pixel − 127.5) / 128) to ⌊side × scale⌋;
- P-Net windows scoring over 0.6, each a 12-pixel cell at stride 2 moved by its regression; per level a
  suppression at IoU 0.5, then across levels at 0.7, then squared;
- R-Net and O-Net see bilinear cuts of the boxes (TensorFlow's crop_and_resize sampling, zeros outside), keep
  scores over 0.7 and ``threshold_onet``, move the boxes by their regressions, suppress at 0.7 (O-Net: over the
  smaller box's area) and, O-Net, place the five landmarks inside the box it was given;
- its suppression drops a box that overlaps any higher-scoring one, suppressed or not.
"""

from __future__ import annotations

import functools
import importlib.util
import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from core.pipeline import _onnx

SCALE_FACTOR = 0.709
CELL, STRIDE = 12, 2
PNET_THRESHOLD, RNET_THRESHOLD = 0.6, 0.7
NMS_LEVEL, NMS_LEVELS, NMS_RNET, NMS_ONET = 0.5, 0.7, 0.7, 0.7
SIDES = {"rnet": 24, "onet": 48}
COLUMNS = 15  # a face row: x1, y1, x2, y2, score, five landmark x, five landmark y
_NMS_PAIRS = 1 << 22  # box pairs compared at once by the suppression: ~100 MB of temporaries at most


@functools.cache  # finding the package walks sys.path: once per process
def weights_file(network: str) -> Path:
    """The mtcnn package's weights for ``network`` ("pnet", "rnet", "onet"), found without importing the package."""
    spec = importlib.util.find_spec("mtcnn")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the 'mtcnn' package is not installed.")
    return Path(next(iter(spec.submodule_search_locations))) / "assets" / "weights" / f"{network}.lz4"


def _build(network: str) -> bytes:
    """The ONNX graph of one network: normalised NHWC pixels in; NHWC maps (P-Net) or rows (R-, O-Net) out.

    The weight files are joblib pickles (lists of arrays in the Keras layers' order); they ship inside the
    installed package, so they are as trusted as its code.
    """
    import joblib  # noqa: PLC0415 - only when a network is built, once per weights file

    arrays = list(joblib.load(weights_file(network)))
    graph = _onnx.Graph(network)

    def take() -> np.ndarray:
        return np.asarray(arrays.pop(0), np.float32)

    def conv_prelu(x: str, pool: tuple[int, int, str] | None = None) -> str:
        kernel, bias, slope = take(), take(), take()  # (rows, cols, in, out), (out,), (1, 1, out)
        x = graph.op("PRelu", graph.conv(x, kernel.transpose(3, 2, 0, 1), bias), graph.const(slope.reshape(-1, 1, 1)))
        if pool is None:
            return x
        size, stride, padding = pool
        return graph.op("MaxPool", x, kernel_shape=[size, size], strides=[stride, stride],
                        auto_pad="SAME_UPPER" if padding == "same" else "VALID")

    def dense(x: str) -> str:
        return graph.op("Add", graph.op("MatMul", x, graph.const(take())), graph.const(take()))

    x = graph.op("Transpose", "pixels", perm=[0, 3, 1, 2])
    if network == "pnet":
        x = conv_prelu(conv_prelu(conv_prelu(x, (2, 2, "same"))))
        offsets = graph.conv(x, take().transpose(3, 2, 0, 1), take())
        scores = graph.op("Softmax", graph.conv(x, take().transpose(3, 2, 0, 1), take()), axis=1)
        outputs = {"offsets": (graph.op("Transpose", offsets, perm=[0, 2, 3, 1]), 4),
                   "scores": (graph.op("Transpose", scores, perm=[0, 2, 3, 1]), 4)}
    else:
        x = conv_prelu(conv_prelu(x, (3, 2, "same")), (3, 2, "valid"))
        if network == "onet":
            x = conv_prelu(x, (2, 2, "same"))
        x = conv_prelu(x)
        x = graph.op("Flatten", graph.op("Transpose", x, perm=[0, 3, 2, 1]))  # Keras flattened (columns, rows, channels)
        x = graph.op("PRelu", dense(x), graph.const(take()))
        offsets = dense(x)
        landmarks = dense(x) if network == "onet" else None
        outputs = {"offsets": (offsets, 2), "scores": (graph.op("Softmax", dense(x), axis=1), 2)}
        if landmarks is not None:
            outputs["landmarks"] = (landmarks, 2)
    assert not arrays, f"{network}: {len(arrays)} weight arrays left over"
    side = SIDES.get(network)
    return graph.to_bytes({"pixels": (None, side, side, 3)}, outputs)


def _session(network: str) -> Any:
    """The process's shared session of ``network``."""
    return _onnx.session(f"mtcnn_{network}", weights_file(network), lambda: _build(network))


def _run(network: str, pixels: np.ndarray) -> dict[str, np.ndarray]:
    session = _session(network)
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(names, {"pixels": np.ascontiguousarray(pixels, np.float32)})))


def load() -> None:
    """Build (or read) the three networks now, so the first photo does not wait for them."""
    for network in ("pnet", "rnet", "onet"):
        _session(network)


def scales(height: int, width: int, min_face_size: int) -> np.ndarray:
    """The pyramid's scales, counted as mtcnn 1.0 counts them."""
    count = round(-(math.log(min(height, width) / CELL) / math.log(SCALE_FACTOR) + 1))
    return CELL / min_face_size * SCALE_FACTOR ** np.arange(max(count, 0))


def detect(images: list[np.ndarray], min_face_size: int, threshold_onet: float) -> list[np.ndarray]:
    """Faces in same-sized RGB images: per image an (n, 15) array (see :data:`COLUMNS`), strongest first."""
    height, width = images[0].shape[:2]
    normalised = (np.stack(images).astype(np.float32) - 127.5) / 128
    boxes = _proposals(normalised, scales(height, width, min_face_size))
    if len(boxes):
        boxes = _refine(normalised, _square(boxes), "rnet", RNET_THRESHOLD, NMS_RNET)
    if len(boxes):
        boxes = _refine(normalised, _square(boxes), "onet", threshold_onet, NMS_ONET)
    if not len(boxes):
        return [np.zeros((0, COLUMNS)) for _ in images]
    return [boxes[boxes[:, 0] == index, 1:] for index in range(len(images))]


def _proposals(images: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """P-Net's windows over the pyramid, rows (image, x1, y1, x2, y2, score) in the original pixels."""
    height, width = images.shape[1:3]
    found = []
    for scale in levels:
        size = (int(width * scale), int(height * scale))
        if min(size) < CELL:
            continue
        pyramid = np.stack([cv2.resize(image, size, interpolation=cv2.INTER_AREA) for image in images])
        out = _run("pnet", pyramid)
        index, rows, cols = np.nonzero(out["scores"][..., 1] > PNET_THRESHOLD)
        if not len(index):
            continue
        offsets = out["offsets"][index, rows, cols] * (CELL - 1)
        corners = np.stack([cols * STRIDE + 1, rows * STRIDE + 1, cols * STRIDE + CELL, rows * STRIDE + CELL], axis=1)
        level = np.column_stack([index, (corners + offsets) / scale, out["scores"][index, rows, cols, 1]])
        found.append(_suppress(level[np.argsort(level[:, 5])[::-1]], NMS_LEVEL, sort=False))
    return _suppress(np.concatenate(found), NMS_LEVELS) if found else np.zeros((0, 6))


def _refine(images: np.ndarray, boxes: np.ndarray, network: str, threshold: float, overlap: float) -> np.ndarray:
    """R-Net or O-Net on cuts of ``boxes``: rescored, moved, thresholded and suppressed (O-Net adds landmarks)."""
    out = _run(network, _cuts(images, boxes, SIDES[network]))
    sides = np.stack([boxes[:, 3] - boxes[:, 1] + 1, boxes[:, 4] - boxes[:, 2] + 1], axis=1)
    moved = boxes[:, :5] + np.column_stack([np.zeros(len(boxes)), out["offsets"] * np.tile(sides, 2)])
    rows = [moved, out["scores"][:, 1:2]]
    if "landmarks" in out:
        marks = out["landmarks"]
        rows += [marks[:, :5] * sides[:, :1] + boxes[:, 1:2] - 1, marks[:, 5:] * sides[:, 1:] + boxes[:, 2:3] - 1]
    scored = np.concatenate(rows, axis=1)
    return _suppress(scored[scored[:, 5] > threshold], overlap, union=network != "onet")


def _square(boxes: np.ndarray) -> np.ndarray:
    """Each box grown to a square of its longer side about the same centre."""
    out = boxes.copy()
    width, height = boxes[:, 3] - boxes[:, 1], boxes[:, 4] - boxes[:, 2]
    side = np.maximum(width, height)
    out[:, 1] += (width - side) / 2
    out[:, 2] += (height - side) / 2
    out[:, 3], out[:, 4] = out[:, 1] + side, out[:, 2] + side
    return out


def _cuts(images: np.ndarray, boxes: np.ndarray, side: int) -> np.ndarray:
    """Bilinear ``side``×``side`` cuts of the boxes, sampled as TensorFlow's crop_and_resize does with the
    package's box coordinates (divided by the image's size, multiplied back by size − 1), zeros outside."""
    height, width = images.shape[1:3]
    steps = np.arange(side) / (side - 1)
    ys = (boxes[:, 2:3] + (boxes[:, 4:5] - boxes[:, 2:3]) * steps) * ((height - 1) / height)  # (n, side)
    xs = (boxes[:, 1:2] + (boxes[:, 3:4] - boxes[:, 1:2]) * steps) * ((width - 1) / width)
    inside = (((ys >= 0) & (ys <= height - 1))[:, :, None] & ((xs >= 0) & (xs <= width - 1))[:, None, :])[..., None]
    ys, xs = np.clip(ys, 0, height - 1), np.clip(xs, 0, width - 1)
    top, left = np.floor(ys).astype(int), np.floor(xs).astype(int)
    bottom, right = np.ceil(ys).astype(int), np.ceil(xs).astype(int)
    dy, dx = (ys - top)[:, :, None, None], (xs - left)[:, None, :, None]
    pixels = images.reshape(-1, images.shape[-1])
    first = (boxes[:, 0].astype(int) * height)[:, None, None]

    def at(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:  # (n, side, side, 3) pixels of each box's grid
        return np.take(pixels, ((first + rows[:, :, None]) * width + cols[:, None, :]), axis=0)

    top_left, bottom_left = at(top, left), at(bottom, left)
    upper = top_left + (at(top, right) - top_left) * dx
    lower = bottom_left + (at(bottom, right) - bottom_left) * dx
    return np.where(inside, upper + (lower - upper) * dy, 0).astype(np.float32)


def _suppress(boxes: np.ndarray, overlap: float, union: bool = True, sort: bool = True) -> np.ndarray:
    """mtcnn 1.0's suppression, per image: a box goes when any higher-scoring box (kept or not) overlaps it by more
    than ``overlap`` (IoU, or intersection over the smaller area when not ``union``). Rows come out grouped by
    image, strongest first; blocks of rows keep the comparison's memory bounded."""
    if sort:
        boxes = boxes[np.argsort(boxes[:, 5])[::-1]]  # numpy's default sort, as mtcnn: it orders ties (many P-Net scores are 1.0)
    kept = []
    for image_index in np.unique(boxes[:, 0]):
        mine = boxes[boxes[:, 0] == image_index]
        area = (mine[:, 3] - mine[:, 1]) * (mine[:, 4] - mine[:, 2])
        keep = np.ones(len(mine), bool)
        rows = max(1, _NMS_PAIRS // len(mine))
        for start in range(1, len(mine), rows):
            block = slice(start, min(start + rows, len(mine)))
            earlier = slice(0, block.stop - 1)
            inter = (np.clip(np.minimum(mine[block, None, 3], mine[None, earlier, 3])
                             - np.maximum(mine[block, None, 1], mine[None, earlier, 1]), 0, None)
                     * np.clip(np.minimum(mine[block, None, 4], mine[None, earlier, 4])
                               - np.maximum(mine[block, None, 2], mine[None, earlier, 2]), 0, None))
            base = (area[block, None] + area[None, earlier] - inter) if union else np.minimum(area[block, None], area[None, earlier])
            with np.errstate(divide="ignore", invalid="ignore"):
                over = inter / base > overlap
            over &= np.arange(block.start, block.stop)[:, None] > np.arange(earlier.stop)[None, :]
            keep[block] = ~over.any(axis=1)
        kept.append(mine[keep])
    return np.concatenate(kept) if kept else np.zeros((0, boxes.shape[1]))
