"""Landing page: what FaceLab does and where to start."""

import streamlit as st

from pages.common import ensure_app_navigation

ensure_app_navigation()

st.title("FaceLab")
st.markdown(
    """
A face-recognition workbench: **detect → align → represent → verify/classify**.

1. **Dataset** — audit a folder laid out as `train/`, `validation/`, `test/` with one sub-folder per person,
   or build one from uploaded photos and webcam shots.
2. **Train** — fine-tune VGGFace16, or train a classifier head on face embeddings, and watch it learn.
3. **Predict** — every face in the test photos boxed and named; unknown faces rejected.
4. **Verify** — are two photos the same person? Each pipeline step shown, embeddings drawn as barcodes.
"""
)
for target, label in [("pages/dataset.py", "Start with a dataset"), ("pages/verify.py", "Compare two photos")]:
    st.page_link(target, label=label)
