"""Embedding barcodes and their shared colour scale (core.compare.barcode)."""

from __future__ import annotations

import numpy as np
import pytest

from core.compare.barcode import DEFAULT_ROWS, barcode_matrix, difference_barcode


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
    ],
)
def test_bad_input_is_rejected_with_a_message(call, message):
    with pytest.raises(ValueError, match=message):
        call()
