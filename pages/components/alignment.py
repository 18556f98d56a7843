"""The rotation switch ("Align faces"), as the Verify and Train pages offer it."""

from __future__ import annotations

import streamlit as st

ALIGN_LABEL = "Align faces (rotate to level the eyes)"
ALIGN_HELP = ("Off: each face is cut exactly as when on (same centre, same size), only not rotated, so a change "
              "shows what the rotation alone does. See BENCHMARKS.md, 'Alignment on vs off'.")


def align_toggle(key: str) -> bool:
    """The switch, on by default; True means rotate."""
    return st.toggle(ALIGN_LABEL, value=True, key=key, help=ALIGN_HELP)
