"""Embedding "barcodes": a vector drawn as coloured stripes so two faces can be compared by eye.

A 1-D vector is hard to see as a line of single pixels, so it is repeated as rows;
every row carries the same information. The Verify page draws these with plotly.

Colours mean the same in every comparison: a backbone's barcodes are drawn on one fixed
value range (:class:`BarcodeScale`), never stretched to the two vectors at hand, so one photo
gives one picture whatever it is compared with, and a small difference looks small.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from core.compare.distances import ZERO_NORM, as_vector, check_same_length

DEFAULT_ROWS = 24
# Scale for a backbone that declares none, on vectors divided by their length (k/√dim). Borrowed from dlib's measured
# descriptors, rounded up: after division by their length, 99 % of slots lie within ±2.7/√dim and 99 % of the
# slot differences between different people below 1.5/√dim (core.pipeline.backbones.dlib_resnet).
UNIT_VALUE_SPREAD = 3.0
UNIT_DIFFERENCE_SPREAD = 2.0


@dataclass(frozen=True)
class BarcodeScale:
    """How one backbone's embeddings are drawn: values on ±``value_limit``, differences on 0…``difference_limit``.

    ``normalised``: each vector is divided by its length first (for backbones that declare no measured range,
    whose raw values could be of any size).
    """

    value_limit: float
    difference_limit: float
    normalised: bool = False

    @property
    def value_range(self) -> tuple[float, float]:
        return -self.value_limit, self.value_limit

    @property
    def difference_range(self) -> tuple[float, float]:
        return 0.0, self.difference_limit

    def values(self, embedding: np.ndarray | Sequence[float]) -> np.ndarray:
        """The numbers drawn for ``embedding``: as they are, or divided by its length when ``normalised``."""
        vector = as_vector(embedding)
        if not self.normalised:
            return vector
        return vector / max(float(np.linalg.norm(vector)), ZERO_NORM)


def barcode_scale(dim: int, declared: tuple[float, float] | None = None) -> BarcodeScale:
    """A backbone's barcode scale: its ``declared`` (value limit, difference limit) measured on real photos, else
    the unit-length fallback for ``dim``-long vectors."""
    if dim < 1:
        raise ValueError(f"a barcode needs at least one slot, got {dim}")
    if declared is not None:
        value, difference = declared
        if not (value > 0 and difference > 0):
            raise ValueError(f"barcode limits must be positive, got {declared}")
        return BarcodeScale(float(value), float(difference))
    root = math.sqrt(dim)
    return BarcodeScale(UNIT_VALUE_SPREAD / root, UNIT_DIFFERENCE_SPREAD / root, normalised=True)


def barcode_matrix(embedding: np.ndarray | Sequence[float], rows: int = DEFAULT_ROWS) -> np.ndarray:
    """The embedding repeated as ``rows`` identical rows: shape (rows, dim)."""
    if rows < 1:
        raise ValueError(f"a barcode needs at least one row, got {rows}")
    return np.tile(as_vector(embedding), (rows, 1))


def difference_barcode(e1: np.ndarray | Sequence[float], e2: np.ndarray | Sequence[float],
                       rows: int = DEFAULT_ROWS) -> np.ndarray:
    """|e1 − e2| as a barcode: dark where the two faces agree, bright where they differ."""
    a, b = as_vector(e1, "first embedding"), as_vector(e2, "second embedding")
    check_same_length(a, b)
    return barcode_matrix(np.abs(a - b), rows)
