"""FaceLab — the Streamlit entry point: page navigation only; each page lives in pages/."""

import streamlit as st

st.set_page_config(page_title="FaceLab", page_icon="🙂", layout="wide")

navigation = st.navigation(
    [
        st.Page("pages/home.py", title="Home", icon="🏠", default=True),
        st.Page("pages/dataset.py", title="Dataset", icon="🗂️"),
        st.Page("pages/train.py", title="Train", icon="🏋️"),
        st.Page("pages/predict.py", title="Predict", icon="🖼️"),
        st.Page("pages/verify.py", title="Verify", icon="🔍"),
    ]
)
navigation.run()
