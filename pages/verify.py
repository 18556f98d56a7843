"""Verify page (being built)."""

import streamlit as st

from pages.common import ensure_app_navigation

ensure_app_navigation()

st.title("Verify")
st.info("This page is being built.")
