"""Helpers shared by the pages: process-wide model caches and user-facing error display.

Models are loaded once per server process (``st.cache_resource``) and shared by every
browser session; anything that belongs to one user lives in ``st.session_state``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import streamlit as st


@st.cache_resource(show_spinner="Loading the face detector…")
def detector(name: str, **settings: Any) -> Any:
    """The shared detector instance (built once per process, thread-safe)."""
    from core.detection import DETECTORS

    return DETECTORS.get(name, **settings)


@st.cache_resource(show_spinner="Loading the face model…")
def backbone(name: str) -> Any:
    """The shared backbone instance (built once per process, thread-safe)."""
    from core.backbones import BACKBONES

    return BACKBONES.get(name)


@contextmanager
def user_errors(what: str) -> Iterator[None]:
    """Show a failure as a clear message instead of a stack trace; the page keeps working."""
    try:
        yield
    except (ValueError, RuntimeError, OSError, KeyError) as exc:
        st.error(f"{what}: {exc}")


def progress_callback(bar: Any, label: str) -> Callable[[int, int], None]:
    """A ``(done, total)`` callback that drives an ``st.progress`` bar."""

    def update(done: int, total: int) -> None:
        bar.progress(min(1.0, done / max(total, 1)), text=f"{label} {done}/{total}")

    return update
