"""FaceLab — the Streamlit entry point: the session's workspace and page navigation; each page lives in pages/.

Every run first makes the session's workspace current (``pages.common.session_workspace``, which also
switches the process into serving browsers: per-user folders are then unreachable without a workspace).
"""

from pathlib import Path

import streamlit as st

from core.services.maintenance import clean_at_startup, home_problem
from pages.common import NAVIGATED, session_workspace


def keep_models_between_runs() -> None:
    """Stop Streamlit from resetting Keras after every script run.

    Streamlit ends each run with ``keras.backend.clear_session()`` (for scripts that build a model on every
    run): a full garbage collection and TensorFlow's kernel cache, 0.21–0.27 s holding the GIL here, process-wide.
    FaceLab builds its models once per process and shares them, so one user's rerun (a trainer's progress redraws
    every second) reset Keras under every other user's detection and training and slowed their pages. FaceLab
    draws no matplotlib figures, the hook's only other concern, so the hook becomes a no-op.
    """
    from streamlit.runtime.scriptrunner import script_runner

    if hasattr(script_runner, "_clean_problem_modules"):
        script_runner._clean_problem_modules = _keep_state


def _keep_state() -> None:
    """What Streamlit's end-of-run clean-up does in FaceLab: nothing (see :func:`keep_models_between_runs`)."""


# A 240 px sidebar (Streamlit's default is 300) leaves an 800 px window more than 500 px of page; below 768 px
# ("auto") it starts collapsed. Pages lay out their rows to wrap, so they read from 800 px to a 1280×720 projector.
SIDEBAR_WIDTH = 240
st.set_page_config(page_title="FaceLab", page_icon=str(Path(__file__).parent / ".streamlit" / "facelab.png"), layout="wide",
                   initial_sidebar_state=SIDEBAR_WIDTH)
clean_at_startup()  # once per server process: what a killed process left behind goes
keep_models_between_runs()
session_workspace()
if problem := home_problem():  # on every page, before any action fails on it
    st.warning(f"Nothing can be saved now: {problem}")

navigation = st.navigation(
    [
        st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
        st.Page("pages/dataset.py", title="Dataset", icon=":material/folder_open:"),
        st.Page("pages/train.py", title="Train", icon=":material/model_training:"),
        st.Page("pages/predict.py", title="Predict", icon=":material/photo_library:"),
        st.Page("pages/verify.py", title="Verify", icon=":material/compare:"),
    ]
)
st.session_state[NAVIGATED] = True
navigation.run()
