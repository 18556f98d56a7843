"""Embedding "barcodes": a vector drawn as coloured stripes so two faces can be compared by eye.

A 1-D vector is hard to see as a line of single pixels, so it is repeated as rows;
every row carries the same information. The Verify page draws these with plotly.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from core.compare.distances import as_vector, check_same_length

DEFAULT_ROWS = 24


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


def shared_scale(*embeddings: np.ndarray | Sequence[float], symmetric: bool | None = None) -> tuple[float, float]:
    """One (vmin, vmax) colour range for several barcodes, so equal values get equal colours.

    ``symmetric`` centres the range on zero (a diverging colour scale); by default it does
    so exactly when the values have both signs. A constant input gets a range of width 1
    so the colour scale never collapses.
    """
    if not embeddings:
        raise ValueError("shared_scale needs at least one embedding")
    values = np.concatenate([as_vector(e) for e in embeddings])
    low, high = float(values.min()), float(values.max())
    if symmetric is None:
        symmetric = low < 0 < high
    if symmetric:
        high = max(abs(low), abs(high))
        low = -high
    if low == high:
        low, high = low - 0.5, high + 0.5
    return low, high
