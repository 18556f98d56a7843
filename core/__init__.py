"""FaceLab's plain-Python library: the face pipeline, datasets, training and the CLI (no Streamlit here)."""
