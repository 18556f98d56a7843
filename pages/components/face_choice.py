"""The face-choice setting (which face of a photo with several is used), as the Verify and Train pages offer it."""

from __future__ import annotations

import streamlit as st

from core.pipeline.face_choice import DEFAULT_FACE_CHOICE, DESCRIPTIONS, RULES


def face_choice_select(key: str) -> str:
    """A select box of the face-choice rules, the measured best preselected; returns the rule's name."""
    rules = list(RULES)
    rule = st.selectbox("Face used in a photo with several", rules, index=rules.index(DEFAULT_FACE_CHOICE), key=key,
                        help="Face 1 of each photo is the one trained on, named and verified. 'central' passes over "
                             "bystanders cut off at the edge and false boxes (see BENCHMARKS.md, 'Which face').")
    st.caption(f"Uses {DESCRIPTIONS[rule]}.")
    return rule
