"""FaceLab — the Streamlit entry point: the session's workspace and page navigation; each page lives in pages/.

Every run first makes the session's workspace current (``pages.common.session_workspace``, which also
switches the process into serving browsers: per-user folders are then unreachable without a workspace).
"""

from pathlib import Path

import streamlit as st

from core.services.maintenance import clean_at_startup, home_problem
from pages.common import NAVIGATED, keep_models_between_runs, session_workspace

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
