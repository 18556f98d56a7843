"""Embedding barcodes and their shared colour scale (core.compare.barcode)."""

from __future__ import annotations

import numpy as np
import pytest

from core.compare.barcode import DEFAULT_ROWS, barcode_matrix, difference_barcode, shared_scale


def test_barcode_repeats_the_embedding_in_every_row():
    embedding = np.random.default_rng(0).normal(size=128).astype(np.float32)
    code = barcode_matrix(embedding, rows=7)
    assert code.shape == (7, 128)
    for row in code:
        np.testing.assert_allclose(row, embedding)
    assert barcode_matrix(embedding).shape == (DEFAULT_ROWS, 128)
    assert barcode_matrix(embedding[None, :], rows=2).shape == (2, 128)  # a (1, d) batch of one is fine


def test_difference_barcode_is_the_absolute_difference():
    code = difference_barcode([1.0, -2.0, 0.5], [0.0, 1.0, 0.5], rows=3)
    np.testing.assert_allclose(code, [[1.0, 3.0, 0.0]] * 3)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: barcode_matrix([1.0, 2.0], rows=0), "at least one row"),
        (lambda: barcode_matrix(np.ones((2, 3))), "1-D"),
        (lambda: barcode_matrix([1.0, np.inf]), "NaN or infinite"),
        (lambda: difference_barcode([1.0, 2.0], [1.0]), "different lengths"),
        (lambda: shared_scale(), "at least one"),
    ],
)
def test_bad_input_is_rejected_with_a_message(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_shared_scale_covers_all_embeddings():
    assert shared_scale([0.1, 0.5], [0.2, 0.9]) == (0.1, 0.9)  # one sign: plain min/max
    assert shared_scale([-0.2, 0.5], [0.1, 0.3]) == (-0.5, 0.5)  # both signs: centred on zero
    assert shared_scale([0.1, 0.5], symmetric=True) == (-0.5, 0.5)
    assert shared_scale([-3.0, 1.0], symmetric=False) == (-3.0, 1.0)


def test_shared_scale_never_collapses_to_a_point():
    low, high = shared_scale([2.0, 2.0])
    assert low < 2.0 < high
    low, high = shared_scale(np.zeros(4), np.zeros(4))
    assert low < 0.0 < high
