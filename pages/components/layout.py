"""Rows that wrap: what keeps every page readable from an 800 px window to a 1280×720 projector.

``st.columns`` gives each cell the same share of the row whatever the window, and cuts the text that does not fit
("Accuracy 1…", "Download SavedMod…" at 800 px); these rows move a cell onto another line instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import streamlit as st


def metric_row(figures: Sequence[tuple[str, object]], details: Mapping[str, Mapping[str, Any]] | None = None) -> None:
    """Metrics side by side, each as wide as its text, wrapping onto another row when the page is narrow.

    ``details`` maps a label to more ``st.metric`` arguments (help, delta…).
    """
    with st.container(horizontal=True, gap="medium"):
        for label, value in figures:
            st.metric(label, value, **(details or {}).get(label, {}))


def wrapping_columns(count: int, width: int) -> list[Any]:
    """``count`` boxes ``width`` px wide side by side, wrapping onto another row when the page is narrower."""
    with st.container(horizontal=True, gap="small"):
        return [st.container(width=width) for _ in range(count)]
