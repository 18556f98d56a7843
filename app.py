"""FaceLab — the Streamlit entry point: page navigation only; each page lives in pages/."""

from pathlib import Path

import streamlit as st

from pages.common import NAVIGATED

st.set_page_config(page_title="FaceLab", page_icon=str(Path(__file__).parent / ".streamlit" / "facelab.png"), layout="wide")

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
