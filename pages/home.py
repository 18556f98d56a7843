"""Landing page: what FaceLab does and where to start."""

import streamlit as st

from pages.common import ensure_app_navigation

ensure_app_navigation()

STARTS = [  # (page, what it leads to, button, key): the two ways in, drawn as the page's main actions
    ("pages/dataset.py", "Audit a dataset, import a zip of photos, or build one from uploads and webcam shots.",
     "Start with a dataset", "home_start_dataset"),
    ("pages/verify.py", "Are two photos the same person? Every step of the pipeline shown.", "Compare two photos",
     "home_start_verify"),
]

st.title("FaceLab")
st.markdown(
    """
A face-recognition workbench: **detect → align → represent → verify/classify**.

1. **Dataset** — audit a folder laid out as `train/`, `validation/`, `test/` with one sub-folder per person,
   or build one from uploaded photos and webcam shots.
2. **Train** — train a classifier head on face embeddings (fast), or fine-tune the face network end to end
   (dlib's ResNet works offline; VGG-Face once its weights are downloaded), and watch it learn.
3. **Predict** — every face in the test photos boxed and named; unknown faces rejected.
4. **Verify** — are two photos the same person? Each pipeline step shown, embeddings drawn as barcodes.
"""
)
for column, (target, text, label, key) in zip(st.columns(len(STARTS)), STARTS):
    with column.container(border=True):
        st.write(text)
        if st.button(label, key=key, type="primary", icon=":material/arrow_forward:", width="stretch"):
            st.switch_page(target)
